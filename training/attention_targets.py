"""Where attention should be on the shapes world: the captioner's as it writes a caption, the
VQA model's glimpses as they read a question.

The world knows which objects each phrase can name, so the cells of those objects are a
target for the attention of the phrase's words (`attention_supervision`), and the objects
are what a sampled caption is checked against (the self-critical reward). Each question
records the objects it asks about, in the order it names them (`target_ids`), so glimpse g
can be pointed at the g-th (`glimpse_supervision`).
"""

import json
from pathlib import Path

import torch
from torch import Tensor

from training.data.coco import CaptionDataset
from training.data.shapes_scene import CANVAS_SIZE, WorldObject, objects_from_coco
from training.data.vqa import VQARecord
from training.metrics.shapes import cells_in_box, phrase_objects


def train_instances(data: Path) -> dict[int, list[WorldObject]]:
    """The objects of each training image, which rewards and attention targets are made of."""
    return objects_from_coco(_instances(data))


def phrase_targets(
    words: list[str], objects: list[WorldObject], grid: tuple[int, int]
) -> list[int]:
    """Flat (step * L + cell) indices of where the attention should be while `words` are
    written: the cells on the objects that fit each phrase so far (`phrase_objects`)."""
    cells = grid[0] * grid[1]
    return [
        step * cells + cell
        for step, fitting in phrase_objects(words, objects).items()
        for cell in {
            c for o in fitting for c in cells_in_box(o.box, grid, CANVAS_SIZE, CANVAS_SIZE)
        }
    ]


def attention_targets(
    dataset: CaptionDataset, objects: dict[int, list[WorldObject]], grid: tuple[int, int]
) -> list[Tensor]:
    """`phrase_targets` of each (image, caption) pair of the data set (step t writes word
    t + 1 of <bos> w_1 .. w_n <eos>)."""
    targets = []
    for (record_index, _), ids in zip(dataset.pairs, dataset.caption_ids, strict=True):
        image_id = dataset.records[record_index].image_id
        words = dataset.tokenizer.convert_ids_to_tokens(ids[1:].tolist())
        flat = phrase_targets(words, objects[image_id], grid)
        targets.append(torch.tensor(flat, dtype=torch.long))
    return targets


def glimpse_targets(
    data: Path, records: list[VQARecord], glimpses: int, grid: tuple[int, int]
) -> list[list[int]]:
    """Flat (glimpse * L + cell) indices of where each question's glimpses should look: glimpse
    g on the cells of the g-th object it names, for questions naming 1 to `glimpses` objects
    (no target for the others: "how many" of five has no order to follow)."""
    boxes = {a["id"]: a["bbox"] for a in _instances(data)["annotations"]}
    cells = grid[0] * grid[1]
    return [
        [
            g * cells + int(cell)
            for g, target in enumerate(record.target_ids)
            for cell in cells_in_box(boxes[target], grid, CANVAS_SIZE, CANVAS_SIZE)
        ]
        if 1 <= len(record.target_ids) <= glimpses
        else []
        for record in records
    ]


def _instances(data: Path) -> dict:
    instances = data / "annotations" / "instances_train.json"
    if not instances.is_file():
        raise ValueError(
            f"the truth reward and attention or glimpse supervision need {instances}:"
            " the objects of each training image (the shapes world)"
        )
    return json.loads(instances.read_text())


def target_mask(shape: torch.Size, flat_targets: list[list[int]] | list[Tensor]) -> Tensor:
    """A bool mask (B, T, L) of `shape`, true at each row's flat (step * L + cell) targets."""
    mask = torch.zeros(shape, dtype=torch.bool)  # (B, T, L)
    for row, flat in zip(mask, flat_targets, strict=True):
        row.view(-1)[flat] = True
    return mask
