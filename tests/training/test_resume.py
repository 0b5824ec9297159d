"""Checkpoints through the CLI: a run killed mid-epoch resumes to the very same model."""

import json
import signal
import time
from pathlib import Path

import torch

from tiny_runs import TINY, finish, glimpse, weights


def reported(out: str) -> dict:
    """The best validation metrics a `glimpse train` run printed on its last line."""
    metrics = json.loads(out.splitlines()[-1])
    del metrics["model"]  # the run's own directory
    return metrics


def test_killed_run_resumes_to_the_same_weights(tiny_world: Path, tmp_path: Path) -> None:
    args = ["train", "captions", "--data", str(tiny_world)]
    full, killed = tmp_path / "full", tmp_path / "killed"
    uninterrupted = glimpse(*args, "--out", str(full), *TINY, "checkpoint_every=1")
    victim = glimpse(*args, "--out", str(killed), *TINY, "checkpoint_every=1")
    state = killed / "train_state.safetensors"
    deadline = time.monotonic() + 120
    while not state.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    expected_metrics = reported(finish(uninterrupted))

    resumed = finish(glimpse(*args, "--out", str(killed), "--resume", *TINY, "checkpoint_every=1"))
    assert reported(resumed) == expected_metrics  # the same captions, scored the same
    assert set(expected_metrics) >= {"score", "CIDEr", "correct", "grounding"}
    expected, got = weights(full), weights(killed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_corrupt_state_is_a_clear_error(tiny_world: Path, tmp_path: Path) -> None:
    (tmp_path / "train_state.safetensors").write_bytes(b"garbage")
    process = glimpse(
        "train", "captions", "--data", str(tiny_world), "--out", str(tmp_path), "--resume", *TINY
    )
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2
    assert "cannot resume from" in err and "train_state.safetensors" in err
