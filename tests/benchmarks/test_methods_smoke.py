"""The methods benchmark end to end on the tiny world, with tiny models and a budget that one
step spends, in three calls whose results merge into one file, so that it does not rot.

The tiny world's own test split stands in for the held-out world, and the machine is taken
to have no Java (METEOR's JVM would take most of the test's time)."""

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import methods
from tiny_runs import TINY, headless


def test_experiments_train_judge_and_merge(
    tiny_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "java" else which(name))
    common = ["--data", str(tiny_world), "--heldout", str(tiny_world), "--beam-size", "1"]
    common += ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path), "--minutes", "1e-6"]
    common += ["--cell-epochs", "1", "--question-epochs", "1", "--scst-epochs", "1"]
    tiny_vqa = 'model={"d_model": 16, "question_dim": 16, "classifier_dim": 16}'
    methods.main([*common, "--only", "captioner-lstm-1", "captioner-gru-2", "--set", *TINY])
    vqa_runs = ["question-gru", "vqa-glimpse-centres", "vqa-glimpse-supervised"]
    vqa_runs += ["vqa-glimpse-relation"]
    methods.main([*common, "--only", *vqa_runs, "--set", *headless(tiny_vqa)])
    init = tmp_path / "runs" / "captioner-lstm-1" / "model"
    scst = ["--only", "scst-mix", "reward-speed", "--init", str(init), "--speed-batches", "1"]
    scst += ["--coco-images", "12"]
    result = methods.main([*common, *scst, "--set", *headless("batch_size=4")])

    written = json.loads((tmp_path / "methods.json").read_text())
    assert written == json.loads(json.dumps(result))
    runs = written["experiments"]
    assert set(runs) == {"captioner-lstm-1", "captioner-gru-2", *vqa_runs, "scst-mix"}
    gru = runs["captioner-gru-2"]
    assert gru["settings"]["model"]["cell"] == "gru" and gru["settings"]["model"]["num_layers"] == 2
    assert gru["settings"]["model"]["d_model"] == 16  # the tiny model, with the cell on top
    assert gru["ended_by"] == "budget" and 0 < gru["epochs_trained"] < 1
    assert gru["heldout"]["beam_size"] == 1 and 0 <= gru["heldout"]["correct"] <= 1
    assert {"grounding", "CIDEr", "Bleu_4", "correct_by_objects"} <= set(gru["heldout"])
    assert runs["question-gru"]["heldout"]["accuracy"] >= 0
    located = runs["vqa-glimpse-centres"]
    assert located["settings"]["model"]["glimpse_centres"] is True
    assert located["settings"]["model"]["d_model"] == 16
    assert "relation" in located["heldout"]["per_question_type"]
    assert runs["vqa-glimpse-supervised"]["settings"]["glimpse_supervision"] == 1.0
    assert runs["vqa-glimpse-relation"]["settings"]["model"]["relation_dim"] == 64
    mix = runs["scst-mix"]
    assert mix["settings"]["reward"] == {"cider_d": 0.5, "truth": 0.5}
    assert mix["ended_by"] == "epochs" and mix["epochs_trained"] == 1
    assert not Path(mix["settings"]["init_from"]).is_absolute()  # paths as the repo names them
    assert not Path(mix["model"]).is_absolute()
    speed = written["reward_speed"]
    assert speed["captions_scored"] == 4 * 5 and speed["batches"] == 1
    assert speed["scoring_ms"] > 0 and speed["forward_backward_ms"] > 0
    assert speed["coco_length"]["captions_scored"] == 50 * 5  # coco-scst's step
    assert speed["coco_length"]["scoring_ms"] > 0
