"""The quality benchmark on a tiny world and untrained models, so that it does not rot."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import heldout_worlds, quality


def test_quality_report_and_sheet(tiny_model_dirs, tmp_path: Path) -> None:
    result = quality.main(
        [
            "--data",
            str(tmp_path / "world"),
            "--images",
            "6",
            "--seed",
            "11",
            "--captioner",
            str(tiny_model_dirs[0]),
            "--vqa",
            str(tiny_model_dirs[1]),
            "--concat",
            str(tiny_model_dirs[1]),
            "--second-seed",
            "12",
            "--conditions",
            "jpeg_q70",
            "resized_192",
            "--beam-size",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    written = json.loads((tmp_path / "quality.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert written["captions"]["correctness"]["total"] == 6
    assert written["captions_int8"]["correctness"]["total"] == 6
    assert set(written["int8_vs_fp32"]) >= {"correctness_points", "grounding_points"}
    assert set(written["vqa"]) == {"attention", "concat"}
    assert (tmp_path / "attention_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    worlds = written["worlds"]
    assert list(worlds) == ["seed 11", "seed 12", "seed 12, jpeg_q70", "seed 12, resized_192"]
    for world in worlds.values():
        assert world["images"] == 6 and set(world["vqa"]) == {"attention", "concat"}
        assert 0 <= world["captions"]["correct"] <= 1


def test_a_changed_world_holds_the_same_scenes_changed(tmp_path: Path) -> None:
    root = tmp_path / "world"
    heldout_worlds.heldout_world(root, 3, seed=4)
    changed = {c: heldout_worlds.changed_world(root, c) for c in ("jpeg_q70", "resized_512")}
    originals = sorted((root / "images" / "test").iterdir())
    for condition, out in changed.items():
        assert out == tmp_path / f"world-{condition}"
        assert (out / "annotations").is_dir()
        copies = sorted((out / "images" / "test").iterdir())
        assert [p.name for p in copies] == [p.name for p in originals]
        for original, copy in zip(originals, copies, strict=True):
            with Image.open(original) as a, Image.open(copy) as b:
                if condition == "resized_512":
                    assert b.size == (512, 512)
                else:
                    assert b.size == a.size
                    pixels = np.asarray(b.convert("RGB"), dtype=np.int16)
                    difference = np.abs(pixels - np.asarray(a.convert("RGB"), dtype=np.int16))
                    assert 0 < difference.mean() < 8  # re-encoded, still the same scene
