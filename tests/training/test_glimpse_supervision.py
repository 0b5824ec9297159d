"""Glimpse supervision: on the shapes world, glimpse g of a question is pointed at the g-th
object the question names."""

import json
from pathlib import Path

import pytest
import torch

from tiny_runs import headless
from training.config import load_config
from training.vqa import VQATask

CPU = torch.device("cpu")
TINY_VQA = 'model={"d_model": 16, "question_dim": 16, "classifier_dim": 16, "dropout": 0.0}'


def supervised_task(tiny_world: Path) -> VQATask:
    torch.manual_seed(0)
    return VQATask(
        load_config("vqa-shapes", headless(TINY_VQA, "glimpse_supervision=1")), tiny_world
    )


def test_each_glimpse_is_pointed_at_the_object_named_in_its_place(tiny_world: Path) -> None:
    task = supervised_task(tiny_world)
    instances = json.loads((tiny_world / "annotations" / "instances_train.json").read_text())
    boxes = {a["id"]: a["bbox"] for a in instances["annotations"]}
    grid, glimpses = task.head.config.grid, task.head.config.glimpses
    cells = grid[0] * grid[1]
    relations = 0
    for record, flat in zip(task.train_set.records, task.glimpse_targets, strict=True):
        if not 1 <= len(record.target_ids) <= glimpses:
            assert flat == []  # no order to follow among more objects than glimpses
            continue
        pointed = {f // cells for f in flat}  # an object too small for a cell centre has none
        assert pointed <= set(range(len(record.target_ids)))
        relations += record.question_type == "relation" and pointed == {0, 1}
        for g, cell in (divmod(f, cells) for f in flat):
            x0, y0, w, h = boxes[record.target_ids[g]]
            row, col = divmod(cell, grid[1])
            x, y = (col + 0.5) * 256 / grid[1], (row + 0.5) * 256 / grid[0]
            assert x0 - 8 <= x <= x0 + w + 8 and y0 - 8 <= y <= y0 + h + 8
    assert relations > 0


def test_the_supervision_adds_the_glimpses_distance_from_their_objects(tiny_world: Path) -> None:
    task = supervised_task(tiny_world)
    task.model.eval()  # no dropout: both losses see the same pass
    batch = task.batches(0)[0]
    b = task.train_set.batch(batch)
    answers_only = task.model(b.inputs, b.questions, b.lengths, b.targets)[2]
    assert task.loss(task.model, batch, CPU) > answers_only + 0.1


@pytest.mark.parametrize(
    ("recipe", "overrides"),
    [
        ("shapes-cpu", ["glimpse_supervision=1"]),
        ("vqa-shapes", ['model={"fusion": "concat"}', "glimpse_supervision=1"]),
        ("vqa-shapes", ["glimpse_supervision=-1"]),
    ],
    ids=["captions", "concat", "negative"],
)
def test_glimpse_supervision_needs_glimpses_and_a_weight(recipe: str, overrides: list) -> None:
    with pytest.raises(ValueError, match="glimpse_supervision"):
        load_config(recipe, overrides)
