"""The task a recipe trains: the VQA model, or the captioner by teacher forcing or by
self-critical training (`self_critical_samples` > 0)."""

from pathlib import Path

from training.captions_self_critical import SelfCriticalTask
from training.captions_teacher_forcing import TeacherForcingTask
from training.config import TrainConfig
from training.loop import Task
from training.vqa import VQATask


def build_task(cfg: TrainConfig, data: Path) -> Task:
    """Load the data and build the model of the task `cfg` describes."""
    if cfg.task == "vqa":
        return VQATask(cfg, data)
    if cfg.self_critical_samples:
        return SelfCriticalTask(cfg, data)
    return TeacherForcingTask(cfg, data)
