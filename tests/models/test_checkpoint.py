import json
import shutil
from pathlib import Path

import pytest
import torch

from models.checkpoint import RENAMED, CheckpointError, load_pretrained, save_pretrained
from models.preprocess import images_to_batch


def test_round_trip_gives_identical_outputs(tiny_model_dirs: tuple[Path, Path]) -> None:
    caption_dir, vqa_dir = tiny_model_dirs
    first, second = load_pretrained(caption_dir), load_pretrained(caption_dir)
    assert first.kind == "captioner" and first.encoder.name == "tiny"
    first_state, second_state = first.model.state_dict(), second.model.state_dict()
    for a, b in zip(first_state.values(), second_state.values(), strict=True):
        assert torch.equal(a, b)
    encoder = first.build_encoder().eval()
    features, _ = encoder(torch.rand(2, 3, 64, 64))
    captions = torch.tensor([[1, 4, 5, 2], [1, 6, 2, 0]])
    assert torch.equal(first.model(features, captions)[0], second.model(features, captions)[0])
    assert torch.equal(
        second.build_encoder()(torch.ones(1, 3, 64, 64))[0], encoder(torch.ones(1, 3, 64, 64))[0]
    )

    vqa = load_pretrained(vqa_dir)
    assert vqa.kind == "vqa" and vqa.answers is not None
    assert len(vqa.answers) == vqa.model.config.num_answers


def test_files_are_json_and_safetensors(tiny_model_dirs: tuple[Path, Path]) -> None:
    caption_dir, vqa_dir = tiny_model_dirs
    assert sorted(p.name for p in caption_dir.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    config = json.loads((vqa_dir / "config.json").read_text())
    assert config["model_type"] == "vqa" and config["model"]["fusion"] == "attention"
    assert (vqa_dir / "model.safetensors").read_bytes()[8:9] == b"{"  # safetensors header
    for f in vqa_dir.iterdir():  # readable by a service user, not just the trainer
        assert f.stat().st_mode & 0o044 == 0o044, f


def copy_dir(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "config.json").unlink(), "missing file .*config.json"),
        (lambda d: (d / "config.json").write_text("{not json"), "config.json is not valid JSON"),
        (lambda d: (d / "config.json").write_text('{"model_type": "gan"}'), "not a Glimpse config"),
        (
            lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 10),
            "model.safetensors is corrupt",
        ),
        (lambda d: (d / "model.safetensors").unlink(), "missing file .*model.safetensors"),
        (lambda d: (d / "tokenizer.json").write_text("[]"), "tokenizer.json is corrupt"),
        (lambda d: (d / "answers.json").write_text('["yes"]'), "answers.json must list"),
    ],
)
def test_damaged_directories_name_the_bad_file(
    tiny_model_dirs: tuple[Path, Path], tmp_path: Path, damage, message: str
) -> None:
    directory = copy_dir(tiny_model_dirs[1], tmp_path / "model")
    damage(directory)
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(directory)


def test_weights_of_another_config_are_rejected(
    tiny_model_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    directory = copy_dir(tiny_model_dirs[0], tmp_path / "model")
    config = json.loads((directory / "config.json").read_text())
    config["model"]["hidden_dim"] = 48
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match"):
        load_pretrained(directory)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(tmp_path / "nope")


def test_preprocessed_batch_feeds_the_encoder(tiny_model_dirs: tuple[Path, Path]) -> None:
    from PIL import Image

    checkpoint = load_pretrained(tiny_model_dirs[0])
    batch = images_to_batch([Image.new("RGB", (80, 50), "red")], checkpoint.encoder.image_size)
    features, grid = checkpoint.build_encoder()(batch)
    assert grid == (4, 4) and features.shape == (1, 16, 64)


def test_half_precision_weights_load_into_a_float32_model(
    tiny_model_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    full = load_pretrained(tiny_model_dirs[0])
    save_pretrained(tmp_path / "half", full, dtype=torch.float16)
    half = load_pretrained(tmp_path / "half")
    size = (tmp_path / "half" / "model.safetensors").stat().st_size
    assert size < 0.6 * (tiny_model_dirs[0] / "model.safetensors").stat().st_size
    for name, value in half.model.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.allclose(value, full.model.state_dict()[name], atol=1e-2, rtol=1e-3)


@pytest.mark.parametrize(
    ("index", "old_names", "defaults"),
    [
        (
            0,
            {"lstm.weight_ih": "cells.0.weight_ih", "init_c.bias": "init_state.1.bias"},
            {"cell": "lstm", "num_layers": 1},
        ),
        (
            1,
            {"question.lstm.weight_hh_l0": "question.rnn.weight_hh_l0"},
            {"question_cell": "lstm", "question_layers": 1, "question_bidirectional": False},
        ),
    ],
)
def test_a_directory_written_before_the_recurrent_options_loads_unchanged(
    tiny_model_dirs: tuple[Path, Path],
    tmp_path: Path,
    index: int,
    old_names: dict[str, str],
    defaults: dict,
) -> None:
    """A model directory exported with one LSTM, before today's weight names and config fields
    existed (as the first bundled models were), loads as the model it was."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    source, old = tiny_model_dirs[index], tmp_path / "old"
    shutil.copytree(source, old)
    with safe_open(source / "model.safetensors", "pt") as f:
        metadata = f.metadata()
    kind = json.loads((source / "config.json").read_text())["model_type"]
    back = {new: prefix for prefix, new in RENAMED[kind].items()}  # today's name -> the old
    written = {}
    for name, tensor in load_file(source / "model.safetensors").items():
        new = next((n for n in back if name.startswith(n)), None)
        written[name if new is None else back[new] + name[len(new) :]] = tensor
    save_file(written, old / "model.safetensors", metadata)
    config = json.loads((source / "config.json").read_text())
    config["model"] = {k: v for k, v in config["model"].items() if k not in defaults}
    (old / "config.json").write_text(json.dumps(config))
    assert old_names.keys() <= written.keys()
    model = load_pretrained(old).model
    assert {k: getattr(model.config, k) for k in defaults} == defaults
    state, today = model.state_dict(), load_pretrained(source).model.state_dict()
    assert state.keys() == today.keys()
    for name, tensor in today.items():
        assert torch.equal(state[name], tensor)
    for old_name, new_name in old_names.items():
        assert torch.equal(state[new_name], written[old_name].float())
