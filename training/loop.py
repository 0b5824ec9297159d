"""The training loop, shared by every task; it knows nothing of captions or answers.

A `Task` supplies the model, the batches and the loss. `fit` sets a run up (`start`: the
optimiser, the warmup + cosine schedule, AMP, DDP, the state to resume from), then per epoch
calls `train_one_epoch` and, on the main process, `evaluate`; between them it keeps the best
model (exported), writes atomic checkpoints, and stops early when the task's validation score
has not improved for `patience` epochs. A time budget (`max_minutes`, counted from the run's
start in this process) ends training after the step that passes it, mid-epoch if need be;
that partial epoch is evaluated, kept if best and checkpointed like any other, so runs
compared at an equal budget each end with a model.
"""

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.distributed as dist
from PIL import Image
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from training.config import TrainConfig
from training.distributed import Distributed, pick_device, setup_distributed
from training.log import TrainingLog
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


@runtime_checkable
class Stateful(Protocol):
    """A task that keeps more than its model as it trains (self-critical training's record of
    which images still teach): checkpointed with the run, so a resumed run goes on the same."""

    def state_dict(self) -> dict[str, Tensor]: ...

    def load_state_dict(self, state: dict[str, Tensor]) -> None: ...


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


@dataclass
class FitResult:
    best_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    out_of_time: bool = False  # the time budget ended training


@dataclass
class Run:
    """Everything a run updates as it trains, which is also what a checkpoint holds."""

    cfg: TrainConfig
    state_path: Path
    device: torch.device
    ddp: Distributed
    model: nn.Module  # the task's model: what is checkpointed and exported
    task_state: Stateful | None  # the task, when it keeps a state of its own
    runner: nn.Module  # the model as stepped: inside DDP and torch.compile when they are on
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None  # autocast on CUDA; None: full precision
    steps_per_epoch: int  # equal on every rank, or DDP hangs
    progress: Progress = field(default_factory=Progress)
    deadline: float | None = None  # time.monotonic() when the budget is spent; None: none

    def checkpoint(self) -> None:
        """Save the run atomically (the main process only: every rank holds the same)."""
        if self.ddp.main:
            training = (self.model, self.optimizer, self.scheduler, self.progress)
            task = self.task_state.state_dict() if self.task_state else None
            save_state(self.state_path, *training, self.cfg.to_dict(), task)


def fit(task: Task, cfg: TrainConfig, out_dir: Path, resume: bool = False) -> FitResult:
    """Train `task.model` for cfg.epochs, checkpointing to out_dir; returns the best metrics."""
    run = start(task, cfg, out_dir / STATE_FILE, resume)
    result = FitResult()
    log = TrainingLog(out_dir, run.ddp.main)
    # a resumed run that had stopped early stays stopped (a fresh one trains, whatever patience)
    result.stopped_early = run.progress.epoch > 0 and stop_early(run)
    while run.progress.epoch < cfg.epochs and not result.stopped_early:
        spent = train_one_epoch(task, run, log)
        if run.ddp.main:
            metrics, pictures = evaluate(task, run.model, run.device)
            keep_best(task, run, metrics, result, out_dir / "model")
            log.epoch(run.progress.global_step, result.history[-1], pictures)
        run.checkpoint()
        if spent:
            result.out_of_time = True
            break
        result.stopped_early = stop_early(run)
    if run.ddp.enabled:
        dist.barrier()
    return result


def start(task: Task, cfg: TrainConfig, state_path: Path, resume: bool) -> Run:
    """A run of `task` set up from `cfg`, restored from `state_path` when resuming."""
    device = pick_device(cfg.device)
    ddp = setup_distributed(device)
    model = task.model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(task.batches(0)) // ddp.world
    total = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(min(cfg.warmup_steps, total // 10 + 1), total)
    )
    progress = Progress()
    torch.manual_seed(cfg.seed)  # dropout and sampling draws; a resume restores its own
    task_state = task if isinstance(task, Stateful) else None
    if resume and state_path.is_file():
        progress, saved = load_state(state_path, model, optimizer, scheduler)
        if task_state and saved:
            task_state.load_state_dict(saved)
    runner: nn.Module = DistributedDataParallel(model) if ddp.enabled else model
    if cfg.compile:
        runner = torch.compile(runner)
    amp_dtype = None
    if device.type == "cuda":
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    return Run(
        cfg=cfg,
        state_path=state_path,
        device=device,
        ddp=ddp,
        model=model,
        task_state=task_state,
        runner=runner,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
        amp_dtype=amp_dtype,
        steps_per_epoch=steps_per_epoch,
        progress=progress,
        deadline=time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes else None,
    )


def train_one_epoch(task: Task, run: Run, log: TrainingLog) -> bool:
    """One optimiser step per batch of this rank's share of the epoch (what is left of it
    when resuming mid-epoch), with a checkpoint every `checkpoint_every` steps. Returns
    whether the time budget is spent: the epoch then ends early, after the step that
    spent it (a resumed run goes on from there)."""
    progress = run.progress
    run.model.train()
    batches = task.batches(progress.epoch)[run.ddp.rank :: run.ddp.world][: run.steps_per_epoch]
    bar = tqdm(
        batches[progress.step_in_epoch :],
        desc=f"epoch {progress.epoch + 1}/{run.cfg.epochs}",
        disable=not run.ddp.main,
        dynamic_ncols=True,
    )
    started, seen, spent = time.perf_counter(), 0, False
    for batch in bar:
        loss = train_step(task, run, batch)
        progress.step_in_epoch += 1
        progress.global_step += 1
        seen += len(batch)
        log.step(progress.global_step, loss.item(), run.scheduler.get_last_lr()[0])
        bar.set_postfix(
            loss=f"{loss.item():.3f}", ex_s=f"{seen / (time.perf_counter() - started):.0f}"
        )
        if progress.global_step % run.cfg.checkpoint_every == 0:
            run.checkpoint()
        if out_of_time(run):
            spent = True
            break
    if progress.step_in_epoch == len(batches):
        progress.epoch += 1
        progress.step_in_epoch = 0
    return spent


def train_step(task: Task, run: Run, batch: list[int]) -> Tensor:
    """Loss, backward (scaled under fp16), clipped update and schedule step; returns the loss."""
    amp = run.amp_dtype is not None
    autocast = torch.autocast("cuda", run.amp_dtype) if amp else nullcontext()
    with autocast:
        loss = task.loss(run.runner, batch, run.device)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    trainable = [p for group in run.optimizer.param_groups for p in group["params"]]
    nn.utils.clip_grad_norm_(trainable, run.cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return loss


@torch.inference_mode()
def evaluate(
    task: Task, model: nn.Module, device: torch.device
) -> tuple[dict[str, float], list[tuple[str, Image.Image]]]:
    """The task's validation metrics and pictures, in eval mode and without autograd."""
    model.eval()
    return task.evaluate(model, device), task.pictures(device)


def keep_best(
    task: Task, run: Run, metrics: dict[str, float], result: FitResult, path: Path
) -> None:
    """Record the epoch; export the model to `path` when it scores best so far, else count
    the epoch toward stopping early."""
    progress = run.progress
    epoch: float = progress.epoch
    if progress.step_in_epoch:  # the time budget ended training mid-epoch
        epoch += round(progress.step_in_epoch / run.steps_per_epoch, 4)
    result.history.append({"epoch": epoch, **metrics})
    tqdm.write(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if metrics["score"] > progress.best_metric:
        progress.best_metric = metrics["score"]
        progress.epochs_without_gain = 0
        result.best_metrics = metrics
        task.export(run.model, path)
    else:
        progress.epochs_without_gain += 1


def stop_early(run: Run) -> bool:
    """Whether `patience` epochs passed without a better score, as the main process saw it."""
    return _main_says(run, run.progress.epochs_without_gain >= run.cfg.patience)


def out_of_time(run: Run) -> bool:
    """Whether the run's time budget is spent, as the main process saw it."""
    return run.deadline is not None and _main_says(run, time.monotonic() >= run.deadline)


def _main_says(run: Run, flag: bool) -> bool:
    """`flag` as the main process has it, on every rank (ranks' clocks and views differ)."""
    value = torch.tensor(float(flag))
    if run.ddp.enabled:
        dist.broadcast(value, src=0)
    return bool(value.item())
