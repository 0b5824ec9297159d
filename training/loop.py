"""The training loop, shared by every task; it knows nothing of captions or answers.

A `Task` supplies the model, the batches and the loss; `fit` owns the optimiser, the
warmup + cosine schedule, AMP, DDP, atomic checkpoints with exact resume, early stopping on
the task's validation score, and the export of the best model.
"""

import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from training.config import TrainConfig
from training.state import Progress, load_state, save_state

STATE_FILE = "train_state.safetensors"


PICTURES = 3  # validation images a task shows in TensorBoard each epoch


class Task(Protocol):
    model: nn.Module

    def batches(self, epoch: int) -> list[list[int]]:
        """The epoch's batches of example indices, the same on every call for that epoch."""

    def loss(self, model: nn.Module, batch: list[int], device: torch.device) -> Tensor: ...

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Validation metrics; `score` drives early stopping and the choice of the best model."""

    def export(self, model: nn.Module, path: Path) -> None: ...

    def pictures(self, device: torch.device) -> list[tuple[str, Image.Image]]:
        """A few validation images with where the model looked, each with what it said."""


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    enabled: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Distributed:
    """Join the process group that `torchrun` describes; a plain run is a world of one."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 2:
        return Distributed()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), True)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """Shuffled batches of examples of similar length, so little of each batch is padding.

    Deterministic in (seed, epoch): a resumed run sees the same batches in the same order.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=gen).tolist()
    order.sort(key=lambda i: lengths[i])  # stable: shuffled within each length
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class TrainingLog:
    """TensorBoard scalars of the main process (`tensorboard --logdir RUN/tb`)."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when logging

            self.writer = SummaryWriter(str(out_dir / "tb"))

    def step(self, step: int, loss: float, lr: float) -> None:
        if self.writer:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)

    def epoch(
        self, step: int, metrics: dict[str, float], pictures: list[tuple[str, Image.Image]]
    ) -> None:
        if self.writer:
            for name, value in metrics.items():
                self.writer.add_scalar(f"val/{name}", value, step)
            for i, (text, picture) in enumerate(pictures):
                tag = f"val/picture_{i}"
                self.writer.add_image(tag, np.asarray(picture), step, dataformats="HWC")
                self.writer.add_text(tag, text, step)
            self.writer.flush()


@dataclass
class FitResult:
    best_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def fit(task: Task, cfg: TrainConfig, out_dir: Path, resume: bool = False) -> FitResult:
    """Train `task.model` for cfg.epochs, checkpointing to out_dir; returns the best metrics."""
    device = pick_device(cfg.device)
    ddp = setup_distributed(device)
    model = task.model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(task.batches(0)) // ddp.world  # equal on every rank, or DDP hangs
    total = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(min(cfg.warmup_steps, total // 10 + 1), total)
    )
    progress = Progress()
    torch.manual_seed(cfg.seed)  # dropout and sampling draws; a resume restores its own
    state_path = out_dir / STATE_FILE
    if resume and state_path.is_file():
        progress = load_state(state_path, model, optimizer, scheduler)
    runner: nn.Module = DistributedDataParallel(model) if ddp.enabled else model
    if cfg.compile:
        runner = torch.compile(runner)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    use_amp = device.type == "cuda" and amp_dtype is not None
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    result = FitResult()
    log = TrainingLog(out_dir, ddp.main)

    def checkpoint() -> None:
        if ddp.main:
            save_state(state_path, model, optimizer, scheduler, progress, cfg.to_dict())

    while progress.epoch < cfg.epochs:
        model.train()
        batches = task.batches(progress.epoch)[ddp.rank :: ddp.world][:steps_per_epoch]
        bar = tqdm(
            batches[progress.step_in_epoch :],
            desc=f"epoch {progress.epoch + 1}/{cfg.epochs}",
            disable=not ddp.main,
            dynamic_ncols=True,
        )
        started, seen = time.perf_counter(), 0
        for batch in bar:
            autocast = torch.autocast("cuda", amp_dtype) if use_amp else nullcontext()
            with autocast:
                loss = task.loss(runner, batch, device)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            progress.step_in_epoch += 1
            progress.global_step += 1
            seen += len(batch)
            log.step(progress.global_step, loss.item(), scheduler.get_last_lr()[0])
            bar.set_postfix(
                loss=f"{loss.item():.3f}", ex_s=f"{seen / (time.perf_counter() - started):.0f}"
            )
            if progress.global_step % cfg.checkpoint_every == 0:
                checkpoint()
        progress.epoch += 1
        progress.step_in_epoch = 0
        if ddp.main:
            _validate(task, model, device, progress, result, out_dir)
            log.epoch(progress.global_step, result.history[-1], task.pictures(device))
        checkpoint()
        stop = torch.tensor(float(progress.epochs_without_gain >= cfg.patience))
        if ddp.enabled:
            dist.broadcast(stop, src=0)
        if stop.item():
            result.stopped_early = True
            break
    if ddp.enabled:
        dist.barrier()
    return result


def _validate(
    task: Task,
    model: nn.Module,
    device: torch.device,
    progress: Progress,
    result: FitResult,
    out_dir: Path,
) -> None:
    """Score the epoch; export the model when it is the best so far, else count toward stopping."""
    metrics = task.evaluate(model, device)
    result.history.append({"epoch": progress.epoch, **metrics})
    tqdm.write(f"epoch {progress.epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if metrics["score"] > progress.best_metric:
        progress.best_metric = metrics["score"]
        progress.epochs_without_gain = 0
        result.best_metrics = metrics
        task.export(model, out_dir / "model")
    else:
        progress.epochs_without_gain += 1
