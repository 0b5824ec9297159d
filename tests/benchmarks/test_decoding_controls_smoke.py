"""The decoding controls benchmark end to end at a tiny size, so that the script does not rot."""

import json
from pathlib import Path

from benchmarks import decoding_controls


def test_decoding_controls_benchmark(tiny_model_dirs, tmp_path: Path) -> None:
    argv = ["--model", str(tiny_model_dirs[0]), "--batches", "1", "3", "--repeats", "1"]
    result = decoding_controls.main([*argv, "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "decoding_controls.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(result["rows"]))
    assert [row["B"] for row in on_disk["rows"]] == [1, 3]
    assert all(row["sample_per_image_img_s"] > 0 for row in on_disk["rows"])
    assert all(row["repeat_penalty_cost"] > 0 for row in on_disk["rows"])
    assert on_disk["checks"]["seeded_same_alone_and_batched"] is True
    assert on_disk["checks"]["n_best_first_is_plain"] is True
    assert not Path(on_disk["model"]).is_absolute()
