"""Training runs small enough for tests: the recipe overrides of a tiny model on the tiny
encoder, and the helpers that run `glimpse` in a child process and read what a run logged."""

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

TINY = [
    "encoder=tiny",
    "encoder_options={}",
    "image_size=64",
    'model={"d_model": 16, "embed_dim": 16, "hidden_dim": 32, "attn_dim": 8, "dropout": 0.3}',
    "batch_size=8",
    "epochs=2",
    "eval_max_images=8",
]


def headless(*overrides: str) -> list[str]:
    """TINY without the head's shape, which a run started from a model takes from it."""
    return [*(a for a in TINY if not a.startswith("model=")), *overrides]


def spawn(args: list[str], **env: str) -> subprocess.Popen:
    """A child in its own process group, so that a timeout can end its children too."""
    return subprocess.Popen(
        args,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def glimpse(*args: str) -> subprocess.Popen:
    return spawn([sys.executable, "-m", "api.cli", *args])


def finish(process: subprocess.Popen) -> str:
    try:
        out, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 0, err[-2000:]
    return out


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def tensorboard_pictures(run: Path) -> dict[str, int]:
    """Validation pictures a run logged, by tag: how many epochs logged each (blank ones not
    counted)."""
    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0})
    events.Reload()
    counts = {}
    for tag in events.Tags()["images"]:
        pictures = [Image.open(io.BytesIO(e.encoded_image_string)) for e in events.Images(tag)]
        counts[tag] = sum(np.asarray(p.convert("L")).std() > 5 for p in pictures)
    return counts
