"""Labels in the model worker: label jobs batched with captions, and an out-of-domain
caption's labels, from the grid the batch already computed (bundled models, real photos)."""

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from pydantic import ValidationError
from skimage import data

from models.encoders import create_encoder
from service.engine import CaptionResult, Engine
from service.jobs import CaptionJob, LabelJob, run_jobs
from service.labels import LabelsResult, find_labeller
from service.loading import load_engine
from service.settings import Settings


@pytest.fixture(scope="module")
def engine() -> Engine:
    return load_engine(Settings(), warm_up=False)


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [Image.fromarray(data.coffee()), Image.fromarray(data.chelsea())]


def test_label_jobs_batched_with_captions_get_what_they_get_alone(engine, photos) -> None:
    alone = run_jobs(engine, [LabelJob(photos[1], 4)])[0]
    batch = run_jobs(
        engine, [CaptionJob(photos[0], 3, 30), LabelJob(photos[1], 2), LabelJob(photos[0], 4)]
    )
    assert isinstance(alone, LabelsResult) and isinstance(batch[1], LabelsResult)
    assert [name for name, _ in batch[1].labels] == [name for name, _ in alone.labels[:2]]
    np.testing.assert_allclose(batch[1].attention, alone.attention[:2], atol=1e-5)
    assert len(batch[2].labels) == 4 and batch[2].attention.shape == (4, 8, 8)


def test_an_out_of_domain_caption_carries_labels_unless_turned_off(engine, photos) -> None:
    caption = run_jobs(engine, [CaptionJob(photos[0], 3, 30)])[0]
    assert isinstance(caption, CaptionResult) and caption.domain is not None
    assert not caption.domain.in_domain
    assert caption.labels is not None and len(caption.labels.labels) == engine.labels_top_k
    engine.labels_top_k = 0
    try:
        quiet = run_jobs(engine, [CaptionJob(photos[0], 3, 30)])[0]
    finally:
        engine.labels_top_k = Settings().labels_top_k
    assert isinstance(quiet, CaptionResult) and quiet.labels is None
    assert quiet.caption == caption.caption


def test_an_engine_without_an_imagenet_head_has_no_labeller(tiny_model_dirs, photos) -> None:
    engine = Engine.from_dirs(*tiny_model_dirs)
    assert engine.labeller is None
    with pytest.raises(RuntimeError, match="ImageNet head"):
        engine.labels(photos, 3)


def test_a_resnet_with_its_classifier_gives_labels_and_without_none(tmp_path) -> None:

    state = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(state, tmp_path / "full.pth")
    torch.save({k: v for k, v in state.items() if not k.startswith("fc.")}, tmp_path / "body.pth")
    encoders = {
        name: (create_encoder("resnet50", weights=tmp_path / f"{name}.pth").freeze(), 128)
        for name in ("body", "full")
    }
    assert find_labeller({("body",): encoders["body"]}, [("body",)]) is None
    labeller = find_labeller({(n,): e for n, e in encoders.items()}, [("body",), ("full",)])
    assert labeller is not None and labeller.key == ("full",)
    with torch.inference_mode():
        grid, _ = encoders["full"][0](torch.rand(2, 3, 128, 128))  # (2, 64, 1024)
    found = labeller.labels(grid, 3)
    assert [r.grid for r in found] == [(4, 4), (4, 4)]
    assert all(len(r.labels) == 3 for r in found)
    np.testing.assert_allclose(found[0].attention.sum(axis=(1, 2)), 1.0, atol=1e-5)


def test_the_labels_setting_is_bounded() -> None:
    assert Settings(labels_top_k=0).labels_top_k == 0  # none with a caption
    with pytest.raises(ValidationError, match="labels_top_k must not exceed max_top_k"):
        Settings(labels_top_k=21)
