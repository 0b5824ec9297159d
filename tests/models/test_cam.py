"""The encoder's own ImageNet head and its class-activation maps (models/encoders/cam.py):
real photographs from scikit-image, none of which the project's data contains."""

import pytest
import torch
from PIL import Image
from skimage import data

from models.encoders import create_encoder, top_classes
from models.encoders.cam import as_distributions
from models.imagenet import imagenet_categories
from models.preprocess import images_to_batch

CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
SIDE, PASTE = 256, 112  # canvas and pasted crop, in pixels: the crop covers 3.5 of 8 cells


@pytest.fixture(scope="module")
def lite0():
    """As the service builds the bundled models' encoder: blocks 4 and 10, BatchNorm folded."""
    return create_encoder("efficientnet_lite0", layers=(4, 10)).fold_batchnorm()


def labels_of(encoder, images: list[Image.Image], k: int = 3):
    with torch.inference_mode():
        grid, size = encoder(images_to_batch(images, SIDE))  # (B, L, D)
        top = encoder.top_from_grid(grid, size)  # (B, 1280, 8, 8)
        return top_classes(top, encoder.imagenet_classifier(), k)


def test_photographs_get_their_imagenet_classes_and_maps_that_sum_to_one(lite0) -> None:
    photos = [Image.fromarray(data.coffee()), Image.fromarray(data.chelsea())]
    found = labels_of(lite0, photos)
    names = imagenet_categories()
    coffee, cat = ([names[i] for i in row] for row in found.indices.tolist())
    assert {"espresso", "cup"} & set(coffee), coffee
    assert CATS & set(cat), cat
    assert found.maps.shape == (2, 3, 8, 8)
    torch.testing.assert_close(found.maps.sum(dim=(2, 3)), torch.ones(2, 3))
    assert (found.maps >= 0).all()
    assert (found.scores[:, :-1] >= found.scores[:, 1:]).all()  # best first


def test_labels_computed_on_from_the_served_grid_equal_the_full_network(lite0) -> None:
    """Sharing the heads' pass (blocks 4 and 10) changes nothing against the plain network."""
    plain = create_encoder("efficientnet_lite0", layers=(15,)).freeze()
    photo = images_to_batch([Image.fromarray(data.chelsea())], SIDE)
    with torch.inference_mode():
        torch.testing.assert_close(lite0.classify(photo), plain.classify(photo), atol=2e-3, rtol=0)


def test_the_maps_are_exact_the_logits_are_their_means(lite0) -> None:
    """CAM with a pooled linear head: each logit is its map's mean (before normalising)."""
    photo = images_to_batch([Image.fromarray(data.coffee())], SIDE)
    classifier = lite0.imagenet_classifier()
    with torch.inference_mode():
        grid, size = lite0(photo)
        top = lite0.top_from_grid(grid, size)  # (1, 1280, 8, 8)
        cams = torch.einsum("kc,bchw->bkhw", classifier.weight, top)  # (1, 1000, 8, 8)
        logits = cams.mean(dim=(2, 3)) + classifier.bias  # (1, 1000)
        torch.testing.assert_close(logits, lite0.classify(photo), atol=1e-3, rtol=1e-4)


def crops() -> list[Image.Image]:
    """Photo crops that each hold one thing: a cat, a coffee cup, a motorcycle, a rocket."""
    return [
        Image.fromarray(data.chelsea()).crop((100, 20, 400, 300)),
        Image.fromarray(data.coffee()).crop((100, 0, 500, 400)),
        Image.fromarray(data.stereo_motorcycle()[0]),
        Image.fromarray(data.rocket()).crop((150, 0, 350, 400)),
    ]


@pytest.mark.parametrize("place", [(0, 0), (144, 0), (0, 144), (144, 144), (72, 72)])
def test_the_top_labels_map_peaks_where_the_photo_was_pasted(lite0, place) -> None:
    x, y = place
    canvases = []
    for crop in crops():
        canvas = Image.new("RGB", (SIDE, SIDE), (128, 128, 128))
        canvas.paste(crop.resize((PASTE, PASTE)), (x, y))
        canvases.append(canvas)
    maps = labels_of(lite0, canvases, k=1).maps[:, 0]  # (4, 8, 8)
    cell = SIDE / maps.shape[-1]
    for m in maps:
        row, col = divmod(int(m.argmax()), m.shape[-1])
        centre_x, centre_y = (col + 0.5) * cell, (row + 0.5) * cell
        assert x <= centre_x <= x + PASTE and y <= centre_y <= y + PASTE, (row, col)
        region = m[
            int(y // cell) : int((y + PASTE) // cell) + 1,
            int(x // cell) : int((x + PASTE) // cell) + 1,
        ]
        assert region.sum() > 0.6  # most of the map, not only its peak


def test_a_map_without_positive_evidence_is_uniform() -> None:
    cams = torch.tensor([[[[-1.0, -2.0], [-3.0, -4.0]], [[0.0, 3.0], [1.0, -5.0]]]])  # (1, 2, 2, 2)
    spread = as_distributions(cams)
    torch.testing.assert_close(spread[0, 0], torch.full((2, 2), 0.25))
    torch.testing.assert_close(spread[0, 1], torch.tensor([[0.0, 0.75], [0.25, 0.0]]))


def test_only_published_weights_have_a_head(tmp_path) -> None:
    assert create_encoder("efficientnet_lite0", pretrained=False).imagenet_classifier() is None
    assert create_encoder("tiny").imagenet_classifier() is None
    with pytest.raises(NotImplementedError, match="no ImageNet head"):
        create_encoder("tiny").top_from_grid(torch.zeros(1, 4, 64), (2, 2))


def test_resnet_has_a_head_when_its_weights_include_the_classifier(tmp_path) -> None:
    import torchvision

    state = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(state, tmp_path / "full.pth")
    torch.save({k: v for k, v in state.items() if not k.startswith("fc.")}, tmp_path / "body.pth")
    full = create_encoder("resnet50", weights=tmp_path / "full.pth")
    trainable = {name.split(".")[0] for name, p in full.named_parameters() if p.requires_grad}
    assert trainable == {"body"}  # fine-tuning never trains the head it does not read
    full.freeze()
    body = create_encoder("resnet50", weights=tmp_path / "body.pth").freeze()
    assert body.imagenet_classifier() is None
    classifier = full.imagenet_classifier()
    assert classifier is not None
    torch.testing.assert_close(classifier.weight, state["fc.weight"])
    images = torch.rand(1, 3, 128, 128)
    reference = torchvision.models.resnet50(weights=None).eval()
    reference.load_state_dict(state)
    with torch.inference_mode():
        grid, size = full(images)  # (1, 64, 1024) at stride 16
        top = full.top_from_grid(grid, size)  # (1, 2048, 4, 4)
        assert top.shape == (1, 2048, 4, 4)
        logits = classifier(top.mean(dim=(2, 3)))
        expected = reference(full.normalise(images))  # torchvision does not normalise
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
