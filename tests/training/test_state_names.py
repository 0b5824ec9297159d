"""A training state written before the captioner's cell became a stack still resumes: its
weights are found under the names they had then."""

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from factories import tiny_captioner_config
from models.captioner import Captioner
from training.state import Progress, load_state, save_state

OLD_NAMES = {"cells.0.": "lstm.", "init_state.0.": "init_h.", "init_state.1.": "init_c."}


def _older(text: str) -> str:
    for new, old in OLD_NAMES.items():
        text = text.replace(new, old)
    return text


def _training(model: Captioner) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(model.parameters())
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def test_a_state_with_the_old_lstm_names_resumes(tmp_path: Path) -> None:
    config = tiny_captioner_config(12, 8, (2, 2))
    torch.manual_seed(0)
    written = Captioner(config)
    path = tmp_path / "train_state.safetensors"
    save_state(path, written, *_training(written), Progress(), {"task": "captions"})
    with safe_open(str(path), framework="pt") as f:
        tree = f.metadata()["state"]
    tensors = {_older(name): t for name, t in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata={"state": _older(tree)})  # as an older run wrote it
    assert any(name.startswith("model.lstm.") for name in tensors)

    torch.manual_seed(1)
    resumed = Captioner(config)
    load_state(path, resumed, *_training(resumed))
    expected, got = written.state_dict(), resumed.state_dict()
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
