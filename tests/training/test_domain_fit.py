"""Fitting a domain check from training images (training/domain.py) and `glimpse domain fit`."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from api.cli import app
from models.checkpoint import load_pretrained
from models.domain import KINDS
from training.domain import FIT_VIEWS, DomainRecipe, fit_for, with_views

runner = CliRunner()


@pytest.fixture(scope="module")
def train_images(tiny_world: Path) -> list[Path]:
    return sorted((tiny_world / "images").rglob("*.png"))


def test_every_view_is_an_rgb_picture_and_differs(train_images) -> None:
    image = Image.open(train_images[0]).convert("RGB")
    rng = np.random.default_rng(0)
    for view in FIT_VIEWS:
        out = view(image, rng)
        assert out.mode == "RGB" and min(out.size) >= 8
        if out.size == image.size:
            assert not np.array_equal(np.asarray(out), np.asarray(image))
    pictures = list(with_views(train_images[:3], views=2, seed=0))
    assert len(pictures) == 9  # each image, then two views of it


@pytest.mark.parametrize("kind", KINDS)
def test_fit_sets_a_threshold_above_the_held_out_images(tiny_model_dirs, train_images, kind):
    checkpoint = load_pretrained(tiny_model_dirs[0])
    recipe = DomainRecipe(views=1, held_out=0.25, false_alarm=0.1, margin=1.5)
    domain = fit_for(checkpoint, train_images, recipe, kind)
    info = domain.info
    assert info["fitted_images"] + info["held_out_images"] == len(train_images)
    assert domain.threshold == pytest.approx(1.5 * info["held_out_quantile"], rel=1e-3)
    assert domain.kind == kind and domain.threshold > 0


def test_too_few_images_are_refused(tiny_model_dirs, train_images) -> None:
    checkpoint = load_pretrained(tiny_model_dirs[0])
    with pytest.raises(ValueError, match="at least 10 images"):
        fit_for(checkpoint, train_images[:5], DomainRecipe())


def test_glimpse_domain_fit_writes_the_files(tiny_model_dirs, tiny_world, tmp_path) -> None:
    model = Path(shutil.copytree(tiny_model_dirs[1], tmp_path / "vqa"))
    weights = (model / "model.safetensors").read_bytes()
    args = ["domain", "fit", "--model", str(model), "--data", str(tiny_world / "images")]
    args += ["--views", "1", "--dataset", "shapes", "--description", "flat coloured shapes"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "domain threshold" in result.stdout
    info = json.loads((model / "domain.json").read_text())
    assert info["kind"] == "pooled" and info["views_per_image"] == 1
    checkpoint = load_pretrained(model)
    assert checkpoint.domain is not None and checkpoint.trained_on is not None
    assert checkpoint.trained_on.dataset == "shapes"
    assert (model / "model.safetensors").read_bytes() == weights  # the weights are untouched


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset", "shapes"], "--dataset and --description together"),
        (["--images", "3"], "Invalid value for '--images'"),
        (["--margin", "0.5"], "Invalid value for '--margin'"),
        (["--false-alarm", "0"], "Invalid value for '--false-alarm'"),
        (["--views", "9"], "Invalid value for '--views'"),
    ],
)
def test_bad_options_are_refused(tiny_model_dirs, tiny_world, extra, message) -> None:
    args = ["domain", "fit", "--model", str(tiny_model_dirs[0])]
    result = runner.invoke(app, [*args, "--data", str(tiny_world / "images"), *extra])
    assert result.exit_code == 2 and message in result.output + result.stderr


def test_no_images_or_no_model_fail_in_one_line(tiny_model_dirs, tmp_path) -> None:
    result = runner.invoke(
        app, ["domain", "fit", "--model", str(tiny_model_dirs[0]), "--data", str(tmp_path)]
    )
    assert result.exit_code == 2 and "found 0 images" in result.stderr
    empty = tmp_path / "images"
    empty.mkdir()
    for i in range(12):
        Image.new("RGB", (32, 32), (i * 20, 100, 100)).save(empty / f"{i}.png")
    result = runner.invoke(
        app, ["domain", "fit", "--model", str(tmp_path / "nope"), "--data", str(empty)]
    )
    assert result.exit_code == 2 and result.stderr.startswith("error: cannot load model")


def test_an_exported_model_carries_its_domain_check(teacher_forced: Path, tiny_world) -> None:
    checkpoint = load_pretrained(teacher_forced)
    assert checkpoint.trained_on is not None and checkpoint.trained_on.dataset == tiny_world.name
    assert "24 images" in checkpoint.trained_on.description  # the tiny world's training split
    assert checkpoint.domain is not None and checkpoint.domain.kind == "pooled"
    assert checkpoint.domain.info["fitted_images"] + checkpoint.domain.info["held_out_images"] == 24


def test_a_vqa_export_carries_one_too(tiny_world, tmp_path: Path) -> None:
    from tiny_runs import headless
    from training.config import load_config
    from training.vqa import VQATask

    head = 'model={"d_model": 16, "question_dim": 16, "classifier_dim": 16}'
    cfg = load_config("vqa-shapes", headless(head, "epochs=1"))
    task = VQATask(cfg, tiny_world)
    task.export(task.model, tmp_path / "vqa")
    checkpoint = load_pretrained(tmp_path / "vqa")
    assert checkpoint.domain is not None and checkpoint.trained_on is not None
