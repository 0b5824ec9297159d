"""The memory benchmark for a few seconds on tiny models, so that it does not rot."""

import json
from pathlib import Path

from benchmarks import memory


def test_memory_reports_every_phase(tiny_model_dirs, tmp_path: Path) -> None:
    caption_dir, vqa_dir = tiny_model_dirs
    argv = ["--bursts", "4", "--trickles", "3", "--settle", "1", "--side", "2000"]
    argv += ["--body-timeout", "1", "--out", str(tmp_path)]
    report = memory.main([*argv, "--caption-model", str(caption_dir), "--vqa-model", str(vqa_dir)])
    assert json.loads((tmp_path / "memory.json").read_text())["phases"] == report["phases"]
    burst, slow = report["phases"]
    assert sum(burst["statuses"].values()) == 4 and burst["failures"] == 0
    assert slow["statuses"] == {"408": 3}
    assert 0.9 <= slow["closed_after_s"][0] <= slow["closed_after_s"][1] < 5
    assert burst["peak_rss_mb"] >= report["warm_idle_rss_mb"] > 0
    assert burst["normal"]["requests"] > 0 and burst["normal"]["statuses"].get("200", 0) > 0
