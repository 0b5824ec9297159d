"""The README's speed table is the script's output from the result files, and the result files
name no machine's paths."""

import json
import re
import shutil
from pathlib import Path

from benchmarks.common import RESULTS
from benchmarks.quality_table import quality_table
from benchmarks.readme import (
    END,
    FORMATTERS,
    README,
    START,
    main,
    speed_table,
    with_tables,
)


def test_the_readme_tables_are_written_from_the_result_files() -> None:
    text = README.read_text()
    assert with_tables(text, RESULTS) == text, "run python -m benchmarks.readme"
    assert "| seed 1 |" in text and "| seed 2, jpeg_q70 (change from seed 2) |" in text


def test_every_result_file_in_the_table_has_a_row() -> None:
    table = speed_table()
    for name in FORMATTERS:
        assert ((RESULTS / f"{name}.json").exists()) == (f"\n| {name} |" in table), name


def test_the_table_follows_a_changed_file_and_leaves_out_a_missing_one(tmp_path: Path) -> None:
    decode = json.loads((RESULTS / "decode.json").read_text())
    decode["rows"][-1]["speedup"] = 1.234
    decode["goal"] |= {"value": 1.234, "met": False}
    (tmp_path / "decode.json").write_text(json.dumps(decode))
    rows = [line for line in speed_table(tmp_path).splitlines() if line.startswith("| ")]
    assert len(rows) == 2  # the header and decode: nothing for the files that are not there
    assert "**1.23x**" in rows[1] and rows[1].endswith("| no |")


def test_check_fails_on_a_stale_table_until_it_is_rewritten(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Speed\n\n{START}\n| stale | 1x | | |\n{END}\n\nAfter.\n")
    shutil.copy(RESULTS / "soak.json", tmp_path / "soak.json")
    argv = ["--readme", str(readme), "--results", str(tmp_path)]
    assert main([*argv, "--check"]) == 1
    assert main(argv) == 0
    assert main([*argv, "--check"]) == 0
    text = readme.read_text()
    assert "| stale |" not in text and "\n| soak | " in text and text.endswith("\n\nAfter.\n")


def strings(value: object) -> list[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


MACHINE_ROOTS = ("/tmp/", "/home/", "/root/", "/work/", "/Users/", "/mnt/", "/var/")


def machine_path(text: str) -> bool:
    """An absolute path as a whole value, or a machine's folder anywhere in a text."""
    whole = not any(c.isspace() for c in text) and re.match(r"/|[A-Za-z]:\\", text) is not None
    return whole or any(root in text for root in MACHINE_ROOTS)


def test_result_files_name_no_absolute_paths() -> None:
    assert machine_path("/tmp/tmpx1/model") and machine_path("read from /work/main/data")
    assert not machine_path("models/pretrained/captioner") and not machine_path("8 img/s")
    for path in RESULTS.glob("*.json"):
        found = [s for s in strings(json.loads(path.read_text())) if machine_path(s)]
        assert not found, f"{path.name}: {found[:3]}"


def test_each_world_in_the_quality_table_shows_its_change_from_the_one_it_came_from() -> None:
    def world(captions: float, vqa: float) -> dict:
        return {
            "captions": {"correct": captions, "by_objects": {"4": 0.5}, "grounding": 0.9},
            "vqa": {"attention": {"accuracy": vqa, "per_question_type": {"relation": 0.6}}},
        }

    worlds = {"seed 1": world(0.9, 0.8), "seed 2": world(0.88, 0.83)}
    worlds["seed 2, jpeg_q70"] = world(0.7, 0.8)
    rows = [r for r in quality_table({"worlds": worlds}).splitlines() if r.startswith("| seed")]
    assert rows[0].startswith("| seed 1 | **90.0%** | - / - / - / 50.0% | 90.0% | **80.0%** |")
    assert rows[1].startswith("| seed 2 (change from seed 1) | **88.0%** (-2.0) |")
    assert "| **83.0%** (+3.0) | - / - / 60.0% / - / - / - | - | - |" in rows[1]
    assert rows[2].startswith("| seed 2, jpeg_q70 (change from seed 2) | **70.0%** (-18.0) |")
    assert "| **80.0%** (-3.0) |" in rows[2]
