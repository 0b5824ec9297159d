"""Recurrent options given in a recipe's `model` reach the head, train, and are recorded in the
exported model directory, which the service's loader reads back."""

import json
from pathlib import Path

import pytest
import torch

from tiny_runs import headless
from training.config import load_config
from training.loop import fit

CAPTIONER = {"d_model": 16, "embed_dim": 16, "hidden_dim": 16, "attn_dim": 8, "dropout": 0.1}
VQA = {"d_model": 16, "question_dim": 16, "classifier_dim": 16}


@pytest.mark.parametrize(
    ("recipe", "head", "options"),
    [
        ("shapes-cpu", CAPTIONER, {"cell": "gru", "num_layers": 2}),
        (
            "vqa-shapes",
            VQA,
            {"question_cell": "gru", "question_layers": 2, "question_bidirectional": True},
        ),
    ],
    ids=["captioner", "vqa"],
)
def test_a_recipe_trains_and_exports_its_recurrent_options(
    recipe: str, head: dict, options: dict, tiny_world: Path, tmp_path: Path
) -> None:
    from models.checkpoint import load_pretrained
    from training.tasks import build_task

    model = json.dumps(head | options)
    cfg = load_config(
        recipe, headless(f"model={model}", "epochs=1", "batch_size=32", "export_dtype=float32")
    )
    torch.manual_seed(0)
    task = build_task(cfg, tiny_world)
    result = fit(task, cfg, tmp_path)
    assert result.history and result.best_metrics
    recorded = json.loads((tmp_path / "model" / "config.json").read_text())["model"]
    assert {k: recorded[k] for k in options} == options
    loaded = load_pretrained(tmp_path / "model").model
    assert {k: getattr(loaded.config, k) for k in options} == options
    exported = loaded.state_dict()
    assert all(torch.equal(exported[k], v) for k, v in task.head.state_dict().items())
