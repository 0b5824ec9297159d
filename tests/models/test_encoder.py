"""Encoders: shapes of every registered backbone, and proof that the ImageNet weights are real."""

import pytest
import torch
from PIL import Image
from skimage import data

from models.encoders import (
    CPU_CHUNK,
    create_encoder,
    encode_in_chunks,
    list_encoders,
    register_encoder,
)
from models.encoders._layers import tf_same_padding
from models.preprocess import image_to_tensor, images_to_batch

# ImageNet classes a photo of a coffee cup may fairly be called.
ESPRESSO, CUP, COFFEE_MUG = 967, 968, 504


@pytest.fixture(scope="module")
def lite0():
    return create_encoder("efficientnet_lite0").freeze()


def build(name: str):
    """The pretrained EfficientNet (weights ship offline), random init for the others."""
    return create_encoder(name, pretrained=name == "efficientnet_lite0").freeze()


@pytest.mark.parametrize("name", list_encoders())
def test_every_encoder_gives_a_stride16_grid(name):
    encoder = build(name)
    images = torch.rand(2, 3, 256, 256)
    with torch.inference_mode():
        grid, (h, w) = encoder(images)
    assert (h, w) == (16, 16) == encoder.grid_size(256)
    assert grid.shape == (2, h * w, encoder.out_dim)
    assert torch.isfinite(grid).all()
    assert grid.std() > 0


@pytest.mark.parametrize("name", list_encoders())
def test_chunked_inference_gives_the_grid_of_one_batch(name):
    encoder = build(name).fold_batchnorm()
    images = torch.rand(CPU_CHUNK + 2, 3, 64, 64)  # one full chunk and a partial one
    with torch.inference_mode():
        grid, hw = encoder(images)
        chunked, chunked_hw = encode_in_chunks(encoder, images)
    assert chunked_hw == hw
    torch.testing.assert_close(chunked, grid)


def test_a_name_registers_once():
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("tiny")(create_encoder)


@pytest.mark.parametrize("size", [224, 250])
def test_grid_size_matches_the_forward_pass(lite0, size):
    with torch.inference_mode():
        _, hw = lite0(torch.rand(1, 3, size, size))
    assert hw == lite0.grid_size(size)


def test_tf_same_padding_pads_the_extra_pixel_after():
    assert tf_same_padding(256, 3, 2) == (0, 1)
    assert tf_same_padding(255, 5, 2) == (2, 2)
    assert tf_same_padding(16, 5, 2) == (1, 2)


def test_pretrained_weights_classify_a_real_photo(lite0):
    photo = Image.fromarray(data.coffee())  # a cup of espresso on a saucer
    with torch.inference_mode():
        probs = lite0.classify(image_to_tensor(photo, 224)[None]).softmax(dim=-1)[0]
    top_prob, top_class = probs.max(dim=0)
    print(f"coffee(): top-1 class {top_class.item()} with probability {top_prob.item():.3f}")
    assert top_class.item() in {ESPRESSO, CUP, COFFEE_MUG}
    assert top_prob.item() > 0.3


def test_random_init_does_not_classify_the_photo():
    """Guards the key test above: it must depend on the loaded weights."""
    encoder = create_encoder("efficientnet_lite0", pretrained=False).freeze()
    photo = Image.fromarray(data.coffee())
    with torch.inference_mode():
        probs = encoder.classify(image_to_tensor(photo, 224)[None]).softmax(dim=-1)[0]
    assert probs.max().item() < 0.3


def test_stride8_and_stride16_blocks_are_pooled_and_concatenated(lite0):
    encoder = create_encoder("efficientnet_lite0", layers=(4, 10)).freeze()
    images = torch.rand(2, 3, 256, 256)
    with torch.inference_mode():
        grid, hw = encoder(images)
        coarse, _ = lite0(images)
    assert hw == (16, 16) and encoder.out_dim == 40 + 112 == 152
    assert grid.shape == (2, 256, 152)
    torch.testing.assert_close(grid[..., 40:], coarse)


def test_lite0_block_strides_and_channels():
    for layers, dim, stride in [((4,), 40, 8), ((5,), 80, 16), ((10,), 112, 16), ((15,), 320, 32)]:
        encoder = create_encoder("efficientnet_lite0", pretrained=False, layers=layers)
        assert (encoder.out_dim, encoder.stride) == (dim, stride)


def test_frozen_encoder_stays_in_eval_mode(lite0):
    parent = torch.nn.Sequential(lite0, torch.nn.Linear(112, 2)).train()
    assert parent.training and parent[1].training
    assert not lite0.training
    assert not any(p.requires_grad for p in lite0.parameters())


def test_folding_batchnorm_keeps_the_grid_and_removes_every_batchnorm():
    eager = create_encoder("efficientnet_lite0", layers=(4, 10)).freeze()
    folded = create_encoder("efficientnet_lite0", layers=(4, 10)).fold_batchnorm()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert not folded.training and not any(p.requires_grad for p in folded.parameters())
    photo = image_to_tensor(Image.fromarray(data.coffee()), 256).unsqueeze(0)
    with torch.inference_mode():
        grid, folded_grid = eager(photo)[0], folded(photo)[0]
    assert grid.abs().max() > 1.0  # a real activation scale, so the bound below means something
    torch.testing.assert_close(folded_grid, grid, atol=1e-3, rtol=1e-3)


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown encoder"):
        create_encoder("vgg_nonexistent")
    with pytest.raises(ValueError, match="needs weights"):
        create_encoder("resnet50")
    with pytest.raises(FileNotFoundError):
        create_encoder("resnet50", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="layers"):
        create_encoder("efficientnet_lite0", pretrained=False, layers=(16,))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        create_encoder("tiny")(torch.rand(3, 64, 64))


def test_resnet_loads_a_torchvision_state_dict_file(tmp_path):
    import torchvision

    reference = torchvision.models.resnet50(weights=None).eval()
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    encoder = create_encoder("resnet50", weights=path).freeze()
    assert encoder.out_dim == 1024
    images = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        grid, (h, w) = encoder(images)
        x = (images - encoder.mean) / encoder.std
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        expected = reference.layer3(reference.layer2(reference.layer1(x)))  # (1, 1024, 4, 4)
    torch.testing.assert_close(grid, expected.flatten(2).transpose(1, 2))
    assert (h, w) == (4, 4)


def test_preprocess_resizes_to_a_unit_range_square():
    image = Image.new("RGB", (300, 200), (255, 0, 128))
    tensor = image_to_tensor(image, 64)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.float32
    torch.testing.assert_close(tensor[:, 10, 10], torch.tensor([1.0, 0.0, 128 / 255]))
    gray = Image.new("L", (256, 256), 51)
    batch = images_to_batch([image, gray], 32)
    assert batch.shape == (2, 3, 32, 32)
    assert batch.min() >= 0 and batch.max() <= 1
    with pytest.raises(ValueError):
        image_to_tensor(image, 0)
    with pytest.raises(TypeError):
        image_to_tensor(torch.zeros(3, 8, 8), 8)
