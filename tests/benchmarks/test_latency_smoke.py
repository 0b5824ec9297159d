"""The latency benchmark end to end at a tiny size, so that it does not rot."""

import json
from pathlib import Path

from benchmarks import latency

TINY_HEAD = ["d_model=16", "embed_dim=8", "hidden_dim=16", "attn_dim=8"]


def test_latency_rows_floors_and_serving_rss(tiny_model_dirs, tmp_path: Path) -> None:
    caption_dir, vqa_dir = map(str, tiny_model_dirs)
    argv = ["--model", caption_dir, "--batches", "1", "2", "--words", "3", "--max-len", "3"]
    argv += ["--vocab", "50", "--head", *TINY_HEAD, "--repeats", "1", "--matmul-n", "64"]
    argv += ["--bandwidth-mb", "4", "--serve-models", caption_dir, vqa_dir]
    result = latency.main([*argv, "--out", str(tmp_path)])
    written = json.loads((tmp_path / "latency.json").read_text())
    assert written.pop("machine")["torch_threads"] >= 1
    assert written == json.loads(json.dumps(result))
    rows = written["rows"]
    assert len(rows) == 2 * 2 * 2 * 2  # heads x precisions x decodings x batches
    for row in rows:
        assert row["total_ms"] == row["encoder_ms"] + row["decode_ms"] > 0
    coco = [row for row in rows if row["head"] == "coco"]
    assert all(row["words"] == 3 for row in coco)  # <eos> suppressed: exactly --words words
    assert written["threads"] >= 1 and written["read_bandwidth_gbs"] > 0
    for name, step in written["coco_step"].items():
        assert step["weight_bytes"] > 0 and step["flops"] > 0, name
        assert written["coco_floor"][name]["caption_ms"] > 0
    assert [g["figure"].split()[1] for g in written["goals"]] == ["greedy", "beam3"] * 2
    for precision in ("fp32", "int8"):
        assert written["serving_rss"][precision]["rss_mb"] > 0
    assert "/tmp" not in json.dumps(written["models"])  # paths relative to the repository
