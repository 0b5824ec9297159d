"""The soak benchmark for a few seconds on tiny models, so that it does not rot."""

import json
from pathlib import Path

from benchmarks import soak


def test_soak_reports_memory_and_statuses(tiny_model_dirs, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    caption_dir, vqa_dir = tiny_model_dirs
    argv = ["--seconds", "3", "--clients", "4", "--warmup", "0.34", "--out", str(out)]
    report = soak.main([*argv, "--caption-model", str(caption_dir), "--vqa-model", str(vqa_dir)])
    assert json.loads(out.read_text()) == report
    assert report["requests"] == sum(report["statuses"].values()) > 0
    assert report["statuses"].get("200", 0) > 0
    assert report["errors"] == {}
    assert len(report["rss_samples"]) >= 2
    rss = report["rss_mb"]
    assert 0 < rss["after_warmup"] <= rss["max"] and rss["final"] <= rss["max"]
    expected = (rss["final"] - rss["after_warmup"]) / rss["after_warmup"]
    assert abs(report["rss_growth_after_warmup"] - expected) < 0.01
