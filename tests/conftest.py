"""Fixtures shared across the suite: shapes worlds and tiny untrained model directories.

The models themselves are built by `factories`, and the worlds' rules written out by
`shapes_truth` (tests/support, on pytest's python path), which test modules import directly.
"""

from pathlib import Path

import pytest

from factories import write_tiny_models
from shapes_truth import WORLD_SIZES


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shapes world (24 train, 8 val, 6 test images) for training and evaluation."""
    from training.data.shapes import generate

    root = tmp_path_factory.mktemp("world")
    generate(root, {"train": 24, "val": 8, "test": 6}, seed=5, workers=1)
    return root


@pytest.fixture(scope="session")
def shapes_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The world the generator tests check (40 images a split), made by two workers."""
    from training.data.shapes import generate

    out = tmp_path_factory.mktemp("shapes") / "world"
    generate(out, WORLD_SIZES, seed=0, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_models(tmp_path_factory.mktemp("tiny-models"))
