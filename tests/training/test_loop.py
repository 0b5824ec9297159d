"""The loop's functions on a task that records what it is asked, and fine-tuning end to end."""

from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn

from tiny_runs import TINY, tensorboard_pictures
from training.config import TrainConfig, load_config
from training.log import TrainingLog
from training.loop import evaluate, fit, start, train_one_epoch


class RecordingTask:
    """A linear model whose validation score falls every epoch; it notes every call."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = nn.Linear(2, 1)
        self.trained: list[list[int]] = []
        self.evaluated: list[tuple[bool, bool]] = []  # (training mode, autograd on)
        self.exports = 0

    def batches(self, epoch: int) -> list[list[int]]:
        return [[0, 1], [2, 3], [4, 5]]

    def loss(self, model: nn.Module, batch: list[int], device: torch.device) -> Tensor:
        self.trained.append(batch)
        return model(torch.tensor(batch, dtype=torch.float).view(-1, 2)).pow(2).mean()

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        self.evaluated.append((model.training, torch.is_grad_enabled()))
        return {"score": -float(len(self.trained))}

    def export(self, model: nn.Module, path: Path) -> None:
        self.exports += 1

    def pictures(self, device: torch.device) -> list:
        return []


CONFIG = TrainConfig(task="vqa", epochs=5, patience=1, warmup_steps=1, device="cpu")


def test_an_epoch_resumed_mid_way_trains_only_the_batches_left(tmp_path: Path) -> None:
    task = RecordingTask()
    run = start(task, CONFIG, tmp_path / "state.safetensors", resume=False)
    run.progress.step_in_epoch = 2  # as a checkpoint taken after two steps says
    before = task.model.weight.detach().clone()
    train_one_epoch(task, run, TrainingLog(tmp_path, enabled=False))
    assert task.trained == [[4, 5]]
    assert not torch.equal(task.model.weight, before)
    progress = run.progress
    assert (progress.epoch, progress.step_in_epoch, progress.global_step) == (1, 0, 1)


def test_evaluation_runs_in_eval_mode_without_autograd() -> None:
    task = RecordingTask()
    metrics, pictures = evaluate(task, task.model.train(), torch.device("cpu"))
    assert task.evaluated == [(False, False)] and metrics == {"score": 0.0} and pictures == []


def test_a_run_stops_when_the_score_stops_improving(tmp_path: Path) -> None:
    task = RecordingTask()
    result = fit(task, CONFIG, tmp_path)
    assert result.stopped_early and [h["epoch"] for h in result.history] == [1, 2]
    assert result.best_metrics == {"score": -3.0} and task.exports == 1
    assert len(task.trained) == 6 and (tmp_path / "train_state.safetensors").is_file()
    again = RecordingTask()  # `make` run again: the resumed run has nothing left to do
    result = fit(again, CONFIG, tmp_path, resume=True)
    assert result.stopped_early and again.trained == [] and again.exports == 0


def test_a_spent_time_budget_ends_training_after_that_step_and_keeps_its_model(
    tmp_path: Path,
) -> None:
    task = RecordingTask()
    cfg = replace(CONFIG, max_minutes=1e-9)  # spent by the first step
    result = fit(task, cfg, tmp_path)
    assert task.trained == [[0, 1]] and result.out_of_time and not result.stopped_early
    assert result.history == [{"epoch": round(1 / 3, 4), "score": -1.0}]
    assert task.exports == 1 and len(task.evaluated) == 1  # evaluated and kept as at an end
    run = start(RecordingTask(), CONFIG, tmp_path / "train_state.safetensors", resume=True)
    assert (run.progress.epoch, run.progress.step_in_epoch) == (0, 1)  # resumable from there


def test_fine_tuning_trains_and_exports_the_encoder(tiny_world: Path, tmp_path: Path) -> None:
    from models.checkpoint import load_pretrained
    from training.captions_teacher_forcing import TeacherForcingTask

    cfg = load_config("shapes-cpu", [*TINY, "fine_tune=true", "epochs=1"])
    torch.manual_seed(0)
    task = TeacherForcingTask(cfg, tiny_world)
    before = {k: v.clone() for k, v in task.model.encoder.state_dict().items()}
    fit(task, cfg, tmp_path)
    exported = load_pretrained(tmp_path / "model")
    assert exported.encoder_state is not None
    assert any(not torch.equal(before[k], v) for k, v in exported.encoder_state.items())
    grid, _ = exported.build_encoder()(torch.rand(1, 3, 64, 64))
    assert grid.shape == (1, 16, 64)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))  # TensorBoard scalars
    assert tensorboard_pictures(tmp_path) == {f"val/picture_{i}": 1 for i in range(3)}
