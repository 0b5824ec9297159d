"""The teacher-forcing task: its batches, and the terms its loss can add."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tiny_runs import TINY
from training.captions_teacher_forcing import TeacherForcingTask
from training.config import load_config

CPU = torch.device("cpu")
SUPERVISED = [*TINY, "attention_supervision=1"]


def test_attention_targets_lie_on_the_objects_their_words_name(tiny_world: Path) -> None:
    from training.data.shapes_scene import COLORS, SHAPES, SIZES, objects_from_coco

    task = TeacherForcingTask(load_config("shapes-cpu", SUPERVISED), tiny_world)
    instances = json.loads((tiny_world / "annotations" / "instances_train.json").read_text())
    objects = objects_from_coco(instances)
    grid = task.head.config.grid
    cells = grid[0] * grid[1]
    data = task.train_set
    supervised = 0
    for (record, _), ids, flat in zip(
        data.pairs, data.caption_ids, task.attention_targets, strict=True
    ):
        words = data.tokenizer.convert_ids_to_tokens(ids.tolist())
        supervised += len(flat) > 0
        for step, cell in zip((flat // cells).tolist(), (flat % cells).tolist(), strict=True):
            word = words[step + 1]  # step t writes the word after <bos> and t words
            assert word in {*SIZES, *COLORS, *SHAPES}, word
            row, col = divmod(cell, grid[1])
            x, y = (col + 0.5) * 256 / grid[1], (row + 0.5) * 256 / grid[0]
            assert any(
                word in (o.size, o.color, o.shape)
                and o.box[0] - 8 <= x <= o.box[0] + o.box[2] + 8
                and o.box[1] - 8 <= y <= o.box[1] + o.box[3] + 8
                for o in objects[data.records[record].image_id]
            ), (words, step, cell)
    assert supervised > 0.9 * len(data)
    task.model.eval()  # no dropout: the two losses see the same pass
    batch = task.batches(0)[0]
    inputs, captions, _, _ = data.batch(batch)
    cross_entropy = task.model(inputs, captions[:, :-1], captions[:, 1:])[2]
    assert task.loss(task.model, batch, CPU) > cross_entropy + 0.1


def test_attention_supervision_without_instances_is_a_clear_error(
    tiny_world: Path, tmp_path: Path
) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").symlink_to(tiny_world / "images")
    for split in ("train", "val"):
        name = f"annotations/captions_{split}.json"
        (tmp_path / name).write_text((tiny_world / name).read_text())
    with pytest.raises(ValueError, match="instances_train.json"):
        TeacherForcingTask(load_config("shapes-cpu", SUPERVISED), tmp_path)


def test_scheduled_sampling_feeds_the_model_its_own_words_in_one_process(
    tiny_world: Path,
) -> None:
    cfg = load_config("shapes-cpu", [*TINY, "scheduled_sampling=1"])
    sampled = TeacherForcingTask(cfg, tiny_world)
    sampled.model.eval()  # no dropout: only the inputs differ
    forced = TeacherForcingTask(load_config("shapes-cpu", TINY), tiny_world)
    forced.model.load_state_dict(sampled.model.state_dict())
    forced.model.eval()
    batch = sampled.batches(0)[0]
    assert sampled.loss(sampled.model, batch, CPU) != forced.loss(forced.model, batch, CPU)

    class Wrapper(nn.Module):  # what DDP and torch.compile look like to the task
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.module = inner

    with pytest.raises(ValueError, match="scheduled_sampling runs in one process"):
        sampled.loss(Wrapper(sampled.model), batch, CPU)


def test_the_sampling_ramp_feeds_own_words_from_its_start_and_logs_each_rate(
    tiny_world: Path, tmp_path: Path
) -> None:
    from training.loop import fit

    ramp = ["scheduled_sampling=0.5", "scheduled_sampling_start=1", "batch_size=40"]
    cfg = load_config("shapes-cpu", [*TINY, *ramp])
    task = TeacherForcingTask(cfg, tiny_world)
    task.model.eval()  # no dropout: only the inputs differ
    batch = task.batches(0)[0]
    inputs, captions, _, _ = task.train_set.batch(batch)
    forced = task.model(inputs, captions[:, :-1], captions[:, 1:])[2]
    assert torch.equal(task.loss(task.model, batch, CPU), forced)  # before the start
    task.batches(1)
    assert task.loss(task.model, batch, CPU) != forced

    result = fit(task, cfg, tmp_path / "run")
    assert [epoch["scheduled_sampling"] for epoch in result.history] == [0.0, 0.5]
