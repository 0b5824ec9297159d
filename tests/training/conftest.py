"""A tiny captioner trained once by teacher forcing, for the tests of what comes after it."""

from pathlib import Path

import pytest
import torch

from tiny_runs import TINY


@pytest.fixture(scope="session")
def teacher_forced(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model directory of one epoch of teacher forcing on the tiny world."""
    from training.captions_teacher_forcing import TeacherForcingTask
    from training.config import load_config
    from training.loop import fit

    out = tmp_path_factory.mktemp("teacher-forced")
    cfg = load_config("shapes-cpu", [*TINY, "epochs=1"])
    torch.manual_seed(0)
    fit(TeacherForcingTask(cfg, tiny_world), cfg, out)
    return out / "model"
