"""What can be checked of the deployment without a Docker engine: the files agree with the code.

The compose file and the Dockerfile name settings and commands; these tests make sure every
GLIMPSE_* variable is a real setting that validates, and every command parses in the CLI.
"""

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from api.cli import app
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SETTING_VARIABLES = {f"GLIMPSE_{name.upper()}" for name in Settings.model_fields}
runner = CliRunner()


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of every Dockerfile line, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def with_defaults(value: object) -> str:
    """Resolve compose's `${NAME:-default}` to its default, as with an empty environment."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def assert_cli_accepts(args: list[str]) -> None:
    """The command and its options exist: `--help` after them parses all of them."""
    assert args[0] == "glimpse"
    result = runner.invoke(app, [*args[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_api_service(compose: dict, monkeypatch) -> None:
    api = compose["services"]["api"]
    assert "profiles" not in api  # `docker compose up` starts it
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    [models] = [v for v in api["volumes"] if isinstance(v, dict) and v["target"] == "/models"]
    assert models["read_only"] is True and models["source"] == "./models/pretrained"
    assert api["read_only"] is True
    environment = {name: with_defaults(value) for name, value in api["environment"].items()}
    assert set(environment) <= SETTING_VARIABLES
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # the compose values validate
    assert settings.caption_model == Path("/models/captioner")
    assert settings.api_keys == [] and settings.cors_origins == []


def test_profiles_and_their_commands(compose: dict) -> None:
    services = compose["services"]
    assert services["train"]["profiles"] == ["train"]
    assert services["train-gpu"]["profiles"] == ["gpu"]
    [device] = services["train-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "/whl/cu" in services["train-gpu"]["build"]["args"]["TORCH_INDEX_URL"]
    for name in ("train", "train-gpu"):
        command = services[name]["command"]
        assert command[:3] == ["glimpse", "train", "captions"]
        assert command[command.index("--data") + 1] == "/data"
        assert_cli_accepts(command)


def test_dockerfile(dockerfile: list[tuple[str, str]]) -> None:
    instructions = dict(dockerfile)  # the last of each kind: the runtime stage's
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in [f"{i} {a}" for i, a in dockerfile]
    torch_index = [a for i, a in dockerfile if i == "ARG" and a.startswith("TORCH_INDEX_URL=")]
    assert torch_index == ["TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"]
    assert instructions["USER"] not in ("root", "0")
    assert "/readyz" in instructions["HEALTHCHECK"]
    assert_cli_accepts(json.loads(instructions["CMD"]))
    variables = dict(item.split("=", 1) for item in shlex.split(instructions["ENV"]) if "=" in item)
    glimpse = {name: value for name, value in variables.items() if name.startswith("GLIMPSE_")}
    assert set(glimpse) <= SETTING_VARIABLES
    assert glimpse["GLIMPSE_CAPTION_MODEL"].startswith("/models/")


def test_dockerignore_keeps_data_and_environments_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "data", "runs"} <= ignored


def test_serve_help_lists_its_options() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--caption-model", "--vqa-model"):
        assert option in result.output
