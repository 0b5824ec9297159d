"""The bundled captioner served in int8 (GLIMPSE_QUANTIZE=int8) says as much truth about shapes
images it never saw, and looks where it should as often, as in fp32: correctness and grounding
within half a point on a fresh held-out world (benchmarks/results/quality.json has the full
held-out figures). Both precisions caption the same encoder grids.
"""

import json
from pathlib import Path

import pytest
from PIL import Image

from models.quantize import quantization_of, quantize_int8
from service.engine import CaptionResult
from service.loading import load_engine
from service.settings import Settings
from training.data.coco import load_caption_split
from training.metrics.shapes import caption_correctness, caption_grounding

IMAGES = 200
BAR = 0.005  # half a point: the int8 option's bar


@pytest.fixture(scope="module")
def fresh_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.data.shapes import generate

    root = tmp_path_factory.mktemp("int8-heldout")
    generate(root, {"train": 0, "val": 0, "test": IMAGES}, seed=13, workers=1, progress=False)
    return root


def scores(results: list[CaptionResult], ids: list[int], instances: dict) -> tuple[float, float]:
    captions = {i: r.caption for i, r in zip(ids, results, strict=True)}
    maps = {
        i: list(zip(r.words, r.attention, strict=True)) for i, r in zip(ids, results, strict=True)
    }
    correct = caption_correctness(captions, instances)["accuracy"]
    return correct, caption_grounding(maps, instances)["hit_rate"]


def test_int8_captioner_stays_within_half_a_point_of_fp32(fresh_world: Path) -> None:
    records = load_caption_split(fresh_world, "test")
    instances = json.loads((fresh_world / "annotations" / "instances_test.json").read_text())
    images = []
    for record in records:
        with Image.open(record.path) as image:
            images.append(image.convert("RGB"))
    ids = [r.image_id for r in records]
    engine = load_engine(Settings(vqa_model=None), warm_up=False)  # the bundled captioner
    grids = engine.encode(images)
    fp32 = scores(engine.caption(images, features=grids), ids, instances)
    quantize_int8(engine.captioner.model)  # what GLIMPSE_QUANTIZE=int8 does on loading
    assert quantization_of(engine.captioner.model) == "int8"
    int8 = scores(engine.caption(images, features=grids), ids, instances)
    assert fp32[0] >= 0.9, "the fp32 captioner itself is broken: the comparison means nothing"
    assert abs(int8[0] - fp32[0]) <= BAR, f"correctness fp32 {fp32[0]:.3f}, int8 {int8[0]:.3f}"
    assert abs(int8[1] - fp32[1]) <= BAR, f"grounding fp32 {fp32[1]:.3f}, int8 {int8[1]:.3f}"
