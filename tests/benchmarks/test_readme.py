"""The README's speed table is the script's output from the result files, and the result files
name no machine's paths."""

import json
import re
import shutil
from pathlib import Path

from benchmarks.common import RESULTS
from benchmarks.readme import END, FORMATTERS, README, START, main, speed_table, with_table


def test_the_readme_table_is_written_from_the_result_files() -> None:
    text = README.read_text()
    assert with_table(text, speed_table()) == text, "run python -m benchmarks.readme"


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
