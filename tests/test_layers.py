"""The packages import in one direction only, so that each layer can be used without the
ones above it: the models without a server, the service without the CLI.

A package may import itself and the packages listed for it, nothing else of the project:

    models      ->  (nothing)
    drawing     ->  (nothing)
    service     ->  models, drawing
    training    ->  models, drawing
    api         ->  service, training, models, drawing
    benchmarks  ->  service, training, models, drawing     (never the CLI's internals)

and no package imports `benchmarks` or `tests`. The checker reads the syntax tree of every
file, so imports inside functions count as much as those at the top.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED: dict[str, set[str]] = {
    "models": set(),
    "drawing": set(),
    "service": {"models", "drawing"},
    "training": {"models", "drawing"},
    "api": {"service", "training", "models", "drawing"},
    "benchmarks": {"service", "training", "models", "drawing"},
}
PROJECT = {*ALLOWED, "tests"}


def module_name(path: Path, root: Path) -> str:
    """The dotted name `path` is imported as: models/encoders/__init__.py -> models.encoders."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(package: str, level: int, module: str | None) -> str:
    """The absolute name of `from <level dots><module> import ...` written in `package`."""
    parts = package.split(".")
    base = parts[: len(parts) - level + 1] if level else []
    return ".".join([*base, *([module] if module else [])])


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `path`, relative ones resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, resolve(package, node.level, node.module)))
    return sorted(found)


def arrows_against_the_layers(root: Path) -> list[str]:
    """'file:line: importer -> imported (module)' for every import the table does not allow."""
    wrong = []
    for importer, allowed in ALLOWED.items():
        for path in sorted((root / importer).rglob("*.py")):
            for line, module in imported_modules(path, root):
                target = module.split(".")[0]
                if target in PROJECT and target != importer and target not in allowed:
                    where = path.relative_to(root).as_posix()
                    wrong.append(f"{where}:{line}: {importer} -> {target} ({module})")
    return wrong


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(source)


def test_the_packages_import_along_the_layers_only() -> None:
    assert sum(1 for package in ALLOWED for _ in (ROOT / package).rglob("*.py")) > 20
    assert arrows_against_the_layers(ROOT) == []


def test_the_checker_reports_arrows_against_the_layers(tmp_path: Path) -> None:
    files = {
        "models/x.py": "from service.engine import Engine\n\n\ndef f():\n    import api.app\n",
        "models/sub/__init__.py": "from ..grid import GridAdapter\nfrom . import y\n",
        "drawing/pictures.py": "import numpy\nimport tests.factories\n",
        "service/engine.py": "from models.captioner import Captioner\nimport drawing\n",
        "api/app.py": "from benchmarks.common import table\n",
        "benchmarks/run.py": "def main():\n    from api.commands.evaluate import evaluate\n",
    }
    write_tree(tmp_path, files)
    assert arrows_against_the_layers(tmp_path) == [
        "models/x.py:1: models -> service (service.engine)",
        "models/x.py:5: models -> api (api.app)",
        "drawing/pictures.py:2: drawing -> tests (tests.factories)",
        "api/app.py:1: api -> benchmarks (benchmarks.common)",
        "benchmarks/run.py:2: benchmarks -> api (api.commands.evaluate)",
    ]


def test_relative_imports_are_resolved_from_the_importing_file(tmp_path: Path) -> None:
    files = {
        "models/sub/__init__.py": "from ..grid import GridAdapter\nfrom . import y\n",
        "models/sub/y.py": "from .z import w\nfrom .. import text\n",
    }
    write_tree(tmp_path, files)
    assert imported_modules(tmp_path / "models/sub/__init__.py", tmp_path) == [
        (1, "models.grid"),
        (2, "models.sub"),
    ]
    assert imported_modules(tmp_path / "models/sub/y.py", tmp_path) == [
        (1, "models.sub.z"),
        (2, "models"),
    ]
