"""The quality benchmark on a tiny world and untrained models, so that it does not rot."""

import json
from pathlib import Path

from benchmarks import quality


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
