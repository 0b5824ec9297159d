"""Each speed benchmark end to end at a tiny size, so that the scripts do not rot."""

import json
from pathlib import Path

from benchmarks import decode, encoder, gpu_step, peers, server, train
from benchmarks.common import proc_field, proc_kib, table


def written(tmp_path: Path, name: str, result: dict) -> dict:
    on_disk = json.loads((tmp_path / f"{name}.json").read_text())
    assert on_disk["machine"]["shared"] is True
    assert len(on_disk["machine"]["load_average"]) == 3
    return on_disk


def test_decode_batched_matches_per_image(tiny_model_dirs, tmp_path: Path) -> None:
    argv = ["--model", str(tiny_model_dirs[0]), "--batches", "1", "3", "--max-len", "5"]
    result = decode.main([*argv, "--repeats", "1", "--out", str(tmp_path)])
    on_disk = written(tmp_path, "decode", result)
    assert [row["B"] for row in on_disk["rows"]] == [1, 3]
    assert all(row["same_captions"] and row["batched_img_s"] > 0 for row in on_disk["rows"])


def test_encoder_against_roofline(tmp_path: Path) -> None:
    argv = ["--encoder", "tiny", "--image-size", "32", "--batches", "2", "--matmul-n", "128"]
    result = encoder.main([*argv, "--repeats", "1", "--out", str(tmp_path)])
    on_disk = written(tmp_path, "encoder", result)
    assert {row["variant"] for row in on_disk["rows"]} >= {"fp32", "bn_folded"}
    assert all(row["gflops"] > 0 and row["x_roofline"] > 0 for row in on_disk["rows"])


def test_peers_tiny_configs(tiny_model_dirs, tmp_path: Path) -> None:
    argv = ["--model", str(tiny_model_dirs[0]), "--tokens", "3", "--smoke", "--repeats", "1"]
    result = peers.main([*argv, "--out", str(tmp_path)])
    on_disk = written(tmp_path, "peers", result)
    assert len(on_disk["rows"]) == 4
    assert all(row["params_m"] > 0 and row["peak_rss_mb"] > 0 for row in on_disk["rows"])
    assert on_disk["rows"][2]["tokens"] == 3


def test_server_under_load(tiny_model_dirs, tmp_path: Path) -> None:
    argv = ["--model", str(tiny_model_dirs[0]), "--clients", "1", "2", "--seconds", "0.5"]
    result = server.main([*argv, "--repeats", "1", "--out", str(tmp_path)])
    on_disk = written(tmp_path, "server", result)
    assert [row["clients"] for row in on_disk["rows"]] == [1, 2]
    assert all(row["ok"] > 0 and row["errors"] == 0 for row in on_disk["rows"])
    assert on_disk["server_peak_rss_mb"] > 0


def test_train_on_feature_cache(tmp_path: Path) -> None:
    argv = ["--images", "4", "--steps", "1", "--batch-size", "4", "--repeats", "1"]
    result = train.main([*argv, "--out", str(tmp_path)])
    on_disk = written(tmp_path, "train", result)
    assert on_disk["cache_img_s"] > 0 and on_disk["train_samples_s"] > 0


def test_gpu_step_runs_every_recipe_through_the_training_step(tmp_path: Path) -> None:
    argv = ["--smoke", "--device", "cpu", "--steps", "1", "--repeats", "1"]
    result = gpu_step.main([*argv, "--out", str(tmp_path)])
    on_disk = written(tmp_path, "gpu_step", result)
    steps = [row["step"] for row in on_disk["rows"]]
    assert any(s.startswith("coco-scst") for s in steps) and sum("vqa" in s for s in steps) == 2
    assert all(row["ms_per_step"] > 0 and row["epoch_min"] > 0 for row in on_disk["rows"])
    assert on_disk["validation_beam3"]["validation_min"] > 0


def test_proc_figures_are_read_by_name(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t    2048 kB\nmodel name\t: AMD EPYC 7B13\n")
    assert proc_kib("VmHWM", str(status)) == 2048
    assert proc_field("model name", str(status)) == "AMD EPYC 7B13"
    assert proc_kib("VmRSS", str(status)) is None
    assert proc_kib("VmRSS", str(tmp_path / "no-such-process")) is None


def test_tables_keep_large_figures_readable() -> None:
    lines = table(
        [{"name": "warm", "ms": 303.07, "ex_s": 6749.2, "n": 3}], ["name", "ms", "ex_s", "n"]
    )
    assert lines.splitlines()[1].split() == ["warm", "303", "6,749", "3"]
