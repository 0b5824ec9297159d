"""The domain score (models/domain.py) and its files in a model directory (models/checkpoint.py)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from models.checkpoint import (
    CheckpointError,
    TrainedOn,
    load_domain,
    load_pretrained,
    record_trained_on,
    save_domain,
)
from models.domain import KINDS, GaussianFit


def grids(n: int, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    """n grids (n, 16, 6) of correlated channels; `shift` moves every cell off the training mean."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 16, 3, generator=g)
    mixed = torch.cat([base, base + 0.1 * torch.randn(n, 16, 3, generator=g)], dim=2)
    return mixed + shift


@pytest.mark.parametrize("kind", KINDS)
def test_shifted_grids_score_far_and_held_out_ones_near(kind) -> None:
    fit = GaussianFit(kind)
    for chunk in grids(400).split(50):  # in batches, as fitting streams them
        fit.add(chunk)
    domain = fit.domain(threshold=1.0)
    near, far = domain.score(grids(50, seed=1)), domain.score(grids(50, shift=3.0, seed=1))
    assert near.shape == far.shape == (50,)
    assert far.min() > 1.5 * near.max()


def test_streamed_fit_equals_one_batch_fit() -> None:
    one, streamed = GaussianFit("pooled"), GaussianFit("pooled")
    data = grids(120)
    one.add(data)
    for chunk in data.split(7):
        streamed.add(chunk)
    a, b = one.domain(), streamed.domain()
    assert torch.allclose(a.mean, b.mean, atol=1e-5)
    assert torch.allclose(a.precision, b.precision, rtol=1e-3, atol=1e-3)


def test_fitting_needs_two_grids() -> None:
    fit = GaussianFit("pooled")
    fit.add(grids(1))
    with pytest.raises(ValueError, match="two grids"):
        fit.domain()


@pytest.fixture
def model_dir(tiny_model_dirs, tmp_path: Path) -> Path:
    """A copy of the tiny captioner directory, which has no domain check."""
    return Path(shutil.copytree(tiny_model_dirs[0], tmp_path / "captioner"))


def fitted_for(model_dir: Path, kind="pooled"):
    channels = load_pretrained(model_dir).model.config.feat_dim
    fit = GaussianFit(kind)
    fit.add(torch.randn(20, 16, channels))
    domain = fit.domain(threshold=3.5)
    domain.info = {"fitted_images": 20}
    return domain


def test_a_directory_without_a_check_loads_without_one(model_dir: Path) -> None:
    checkpoint = load_pretrained(model_dir)
    assert checkpoint.domain is None and checkpoint.trained_on is None


@pytest.mark.parametrize("kind", KINDS)
def test_domain_files_round_trip_as_safetensors_and_json(model_dir: Path, kind) -> None:
    domain = fitted_for(model_dir, kind)
    save_domain(model_dir, domain)
    info = json.loads((model_dir / "domain.json").read_text())
    assert info == {"kind": kind, "threshold": 3.5, "fitted_images": 20}
    loaded = load_pretrained(model_dir).domain
    assert loaded is not None and loaded.kind == kind and loaded.threshold == 3.5
    assert torch.equal(loaded.precision, domain.precision)
    probe = torch.randn(3, 16, len(domain.mean) // (2 if kind == "pooled" else 1))
    assert torch.allclose(loaded.score(probe), domain.score(probe))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kind": "energy"}, "kind must be one of"),
        ({"threshold": 0}, "threshold above 0"),
        ({"threshold": "high"}, "threshold above 0"),
        ({"kind": None}, "kind must be one of"),
    ],
)
def test_bad_domain_json_is_refused_naming_the_file(model_dir: Path, change, message) -> None:
    save_domain(model_dir, fitted_for(model_dir))
    info = json.loads((model_dir / "domain.json").read_text()) | change
    (model_dir / "domain.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(model_dir)


def test_missing_corrupt_or_mismatched_domain_tensors_are_refused(model_dir: Path) -> None:
    save_domain(model_dir, fitted_for(model_dir))
    tensors = model_dir / "domain.safetensors"
    tensors.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="domain.safetensors is corrupt"):
        load_domain(model_dir)
    tensors.unlink()
    with pytest.raises(CheckpointError, match="missing file"):
        load_domain(model_dir)
    fit = GaussianFit("pooled")
    fit.add(torch.randn(20, 16, 5))  # 5 channels: not the model's encoder
    save_domain(model_dir, fit.domain(threshold=2.0))
    with pytest.raises(CheckpointError, match="does not match the encoder"):
        load_pretrained(model_dir)
    (model_dir / "domain.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="do not hold a domain model"):
        load_domain(model_dir)


def test_trained_on_is_recorded_in_config_json(model_dir: Path) -> None:
    record_trained_on(model_dir, TrainedOn("shapes", "flat coloured shapes"))
    assert load_pretrained(model_dir).trained_on == TrainedOn("shapes", "flat coloured shapes")
    config = json.loads((model_dir / "config.json").read_text())
    for bad in ({"dataset": "shapes"}, {"dataset": 3, "description": "x"}, "shapes"):
        (model_dir / "config.json").write_text(json.dumps(config | {"trained_on": bad}))
        with pytest.raises(CheckpointError, match="trained_on"):
            load_pretrained(model_dir)
