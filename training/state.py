"""Training checkpoints: model, optimizer, scheduler, RNG and progress in ONE safetensors file.

Tensors go in the file's tensors, everything else as JSON in its metadata; written to a
temp file and renamed, so a run killed at any point (during the write too) leaves the last
good checkpoint intact. No pickle.
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from models.checkpoint import renamed, write_atomic


class TrainingStateError(Exception):
    """A training checkpoint that cannot be read; the message names the file."""


@dataclass
class Progress:
    epoch: int = 0
    step_in_epoch: int = 0  # batches of `epoch` already done
    global_step: int = 0
    best_metric: float = float("-inf")
    epochs_without_gain: int = 0


def _split(tree: object, prefix: str, tensors: dict[str, Tensor]) -> object:
    """Replace every tensor in a nested dict/list by a reference, collecting the tensors."""
    if isinstance(tree, Tensor):
        tensors[prefix] = tree.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(tree, dict):
        return {str(k): _split(v, f"{prefix}.{k}", tensors) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(tree)]
    return tree


def _join(tree: object, tensors: dict[str, Tensor]) -> object:
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return tensors[tree["__tensor__"]]
        return {k: _join(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, tensors) for v in tree]
    return tree


def _int_keys(state: dict) -> dict:
    """Optimizer state is keyed by parameter index; JSON made the keys strings."""
    return {**state, "state": {int(k): v for k, v in state["state"].items()}}


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(
    path: Path,
    model,
    optimizer,
    scheduler,
    progress: Progress,
    config: dict,
    task: dict[str, Tensor] | None = None,
) -> None:
    """Write the run; `task` is what the task itself keeps as it trains (`Stateful`)."""
    tensors: dict[str, Tensor] = {}
    tree = {
        "model": _split(model.state_dict(), "model", tensors),
        "optimizer": _split(optimizer.state_dict(), "optimizer", tensors),
        "scheduler": _split(scheduler.state_dict(), "scheduler", tensors),
        "rng": _split(rng_state(), "rng", tensors),
        "progress": progress.__dict__,
        "config": config,
        "task": _split(task or {}, "task", tensors),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata={"state": json.dumps(tree)}))


def load_state(path: Path, model, optimizer, scheduler) -> tuple[Progress, dict[str, Tensor]]:
    """Restore everything `save_state` wrote; returns where to continue and the task's own
    state (empty from runs written before tasks kept one)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            tree = json.loads(f.metadata()["state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise TrainingStateError(f"cannot resume from {path}: {exc}") from exc
    kind = "captioner" if tree["config"].get("task", "captions") == "captions" else "vqa"
    model.load_state_dict(renamed(kind, _join(tree["model"], tensors)))  # older runs resume
    optimizer.load_state_dict(_int_keys(_join(tree["optimizer"], tensors)))
    scheduler.load_state_dict(_join(tree["scheduler"], tensors))
    set_rng_state(_join(tree["rng"], tensors))
    task = cast(dict[str, Tensor], _join(tree.get("task", {}), tensors))
    return Progress(**tree["progress"]), task
