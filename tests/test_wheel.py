"""The wheel works outside the repository: `pip install .` then `glimpse serve` anywhere.

The service finds its bundled models next to the installed `models` package, so the wheel
must carry them (and the web page and the training recipes) as package data. The wheel is
built offline from a copy of the source, installed into a bare folder, and imported from
another directory with nothing of the checkout on the path.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
PACKAGE_DATA = ("models/pretrained", "api/static", "training/configs")

LOAD_THE_DEFAULTS = """
import json
import models
from models.checkpoint import load_pretrained
from service.settings import Settings

settings = Settings()
heads = [load_pretrained(d) for d in (settings.caption_model, settings.vqa_model)]
print(json.dumps({
    "models": models.__file__,
    "dirs": [str(settings.caption_model), str(settings.vqa_model)],
    "kinds": [head.kind for head in heads],
}))
"""


def packages() -> list[str]:
    """The top-level packages pyproject.toml puts in the wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return [pattern.rstrip("*") for pattern in include]


def run(command: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy, so that the build leaves nothing in the checkout."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in packages():
        shutil.copytree(ROOT / package, source / package, ignore=skip)
    out = tmp_path_factory.mktemp("dist")
    run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, source])
    [built] = out.glob("glimpse-*.whl")
    return built


def test_the_wheel_carries_the_models_the_web_page_and_the_recipes(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    data = [p for folder in PACKAGE_DATA for p in (ROOT / folder).rglob("*") if p.is_file()]
    assert len([p for p in data if p.name == "model.safetensors"]) == 2
    assert {p.relative_to(ROOT).as_posix() for p in data} - names == set()
    assert not [name for name in names if name.startswith("tests/")]


def test_the_installed_wheel_serves_its_bundled_models_from_anywhere(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    run([*PIP, "install", "--no-deps", "--no-index", "--target", target, wheel])
    dependencies = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(target), *sorted(dependencies)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # -S: no site hooks, so the editable install's finder cannot lead back to the checkout.
    done = run([sys.executable, "-S", "-c", LOAD_THE_DEFAULTS], cwd=elsewhere, env=environment)
    loaded = json.loads(done.stdout)
    assert Path(loaded["models"]).is_relative_to(target)
    assert [Path(d).relative_to(target).as_posix() for d in loaded["dirs"]] == [
        "models/pretrained/captioner",
        "models/pretrained/vqa",
    ]
    assert loaded["kinds"] == ["captioner", "vqa"]
