"""benchmarks.domain end to end at a tiny size, so that the script does not rot."""

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import domain
from models.checkpoint import load_pretrained, save_domain
from training.domain import DomainRecipe, fit_for


def test_domain_benchmark_on_a_tiny_model(tiny_model_dirs, tiny_world, tmp_path: Path) -> None:
    model = Path(shutil.copytree(tiny_model_dirs[0], tmp_path / "captioner"))
    images = sorted((tiny_world / "images").rglob("*.png"))
    save_domain(model, fit_for(load_pretrained(model), images, DomainRecipe(views=1)))
    argv = ["--model", str(model), "--images", "4", "--varied", "2", "--repeats", "1"]
    argv += ["--compare-data", str(tiny_world / "images"), "--compare-images", "12"]
    domain.main([*argv, "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "domain.json").read_text())
    stored = on_disk["stored_check"]
    assert set(stored["per_set"]) == {"held_out", "foreign", *domain.VARIATIONS}
    assert stored["per_set"]["foreign"]["max"] >= stored["per_set"]["foreign"]["min"] > 0
    assert 0 <= stored["auroc"] <= 1 and on_disk["cost"]["check_ms"] > 0
    assert set(on_disk["compared"]) == {"pooled", "cells"}
    assert not on_disk["model"].startswith("/")  # results hold no absolute paths


def test_a_model_without_a_check_is_refused(tiny_model_dirs, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="has no domain check"):
        domain.main(["--model", str(tiny_model_dirs[0]), "--out", str(tmp_path)])


def test_auroc() -> None:
    assert domain.auroc([1, 2], [3, 4]) == 1.0
    assert domain.auroc([3, 4], [1, 2]) == 0.0
    assert domain.auroc([1, 3], [2, 2]) == 0.5
