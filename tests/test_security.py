"""Security rules checked on the source itself: no unsafe loads, no outbound fetching.

The scanner walks the syntax tree (not the text), so comments and docstrings that mention
pickle do not count, and `model.eval()` is not mistaken for the builtin `eval`.
"""

import ast
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.middleware import BodyLimit
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "training", "service", "api", "benchmarks")
SERVING = ("service", "api")  # code reachable from a request: must never fetch a URL

UNSAFE_MODULES = {"pickle", "cPickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}
FETCHING_MODULES = {"urllib.request", "requests", "httpx", "aiohttp", "http.client", "urllib3"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def unsafe_calls(source: str) -> list[str]:
    """Every unsafe load or shell call in `source`, as 'line: what'."""
    tree = ast.parse(source)
    found = [f"imports {name}" for name in _imported(tree) if name.split(".")[0] in UNSAFE_MODULES]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        where = f"{node.lineno}: {name}"
        if name in {"eval", "exec", "compile", "__import__"}:
            found.append(where)
        elif name.endswith("torch.load") and not _is_true(_keyword(node, "weights_only")):
            found.append(f"{where} without weights_only=True")
        elif name in {"yaml.load", "yaml.load_all", "yaml.unsafe_load"}:
            loader = _dotted(_keyword(node, "Loader") or ast.Constant(None))
            if not loader.endswith(("SafeLoader", "CSafeLoader")):
                found.append(f"{where} without SafeLoader")
        elif name.startswith("subprocess.") and _is_true(_keyword(node, "shell")):
            found.append(f"{where} with shell=True")
        elif name in {"os.system", "os.popen"}:
            found.append(where)
        elif name.endswith(("np.load", "numpy.load")) and _is_true(_keyword(node, "allow_pickle")):
            found.append(f"{where} with allow_pickle=True")
    return found


def sources(packages: tuple[str, ...]) -> list[Path]:
    files = [path for package in packages for path in sorted((ROOT / package).rglob("*.py"))]
    assert files, "no source found: the scan would pass vacuously"
    return files


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "from joblib import load",
        "import torch\ntorch.load('x.pt')",
        "import torch\ntorch.load('x.pt', weights_only=False)",
        "eval('1 + 1')",
        "exec('x = 1')",
        "import yaml\nyaml.load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.Loader)",
        "import subprocess\nsubprocess.run('ls', shell=True)",
        "import os\nos.system('ls')",
        "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
    ],
)
def test_the_scanner_flags_each_unsafe_pattern(snippet: str) -> None:
    assert unsafe_calls(snippet)


def test_the_scanner_accepts_the_safe_forms() -> None:
    safe = (
        "import torch, yaml, subprocess\nmodel.eval()\n"
        "torch.load('x.pt', map_location='cpu', weights_only=True)\n"
        "yaml.load(text, Loader=yaml.SafeLoader)\nsubprocess.run(['ls'], check=True)\n"
    )
    assert unsafe_calls(safe) == []


def test_no_unsafe_loads_in_the_source() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{problem}"
        for path in sources(PACKAGES)
        for problem in unsafe_calls(path.read_text())
    ]
    assert problems == []


def test_serving_code_never_fetches_urls() -> None:
    """No outbound HTTP client in the request path: there is no SSRF surface to abuse."""
    fetching = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(SERVING)
        for name in _imported(ast.parse(path.read_text()))
        if name in FETCHING_MODULES or name.split(".")[0] in FETCHING_MODULES
    ]
    assert fetching == []


def test_weights_are_safetensors_and_configs_json() -> None:
    """The only torch.load is the encoder's published file, and it is weights-only."""
    loads = [
        (path.relative_to(ROOT).as_posix(), node.lineno)
        for path in sources(PACKAGES)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and _dotted(node.func).endswith("torch.load")
    ]
    assert [path for path, _ in loads] == ["models/encoders/_weights.py"]
    checkpoint = (ROOT / "models" / "checkpoint.py").read_text()
    assert "safetensors" in checkpoint and "json" in checkpoint


def _app(**overrides) -> TestClient:
    """The app without its lifespan: enough for middleware, and no model is loaded."""
    return TestClient(create_app(Settings(caption_model="", vqa_model="", **overrides)))


def test_cors_is_off_by_default_and_configurable() -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    default = _app().options("/v1/captions", headers=preflight)
    assert "access-control-allow-origin" not in default.headers
    allowed = _app(cors_origins=["https://app.example"])
    granted = allowed.options(
        "/v1/captions", headers={**preflight, "Origin": "https://app.example"}
    )
    assert granted.headers["access-control-allow-origin"] == "https://app.example"
    refused = allowed.options("/v1/captions", headers=preflight)
    assert "access-control-allow-origin" not in refused.headers


def test_request_size_limits_are_on_by_default() -> None:
    settings = Settings(caption_model="", vqa_model="")
    assert settings.max_image_bytes == 10 * 1024 * 1024
    assert settings.max_body_bytes < 11 * 1024 * 1024
    app = create_app(settings)
    assert any(middleware.cls is BodyLimit for middleware in app.user_middleware)
    too_big = _app().post("/v1/captions", content=bytes(settings.max_body_bytes + 1))
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "image_too_large"
