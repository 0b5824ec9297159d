"""Training end to end on a tiny shapes world: recipes, exact resume after SIGKILL, DDP."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.config import load_config

TINY = [
    "encoder=tiny",
    "encoder_options={}",
    "image_size=64",
    'model={"d_model": 16, "embed_dim": 16, "hidden_dim": 32, "attn_dim": 8, "dropout": 0.3}',
    "batch_size=8",
    "epochs=2",
    "eval_max_images=8",
]


@pytest.fixture(scope="module")
def world(tiny_world: Path) -> Path:
    return tiny_world


def tensorboard_pictures(run: Path) -> dict[str, int]:
    """Validation pictures a run logged, by tag: how many epochs logged each (blank ones not
    counted)."""
    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0})
    events.Reload()
    counts = {}
    for tag in events.Tags()["images"]:
        pictures = [Image.open(io.BytesIO(e.encoded_image_string)) for e in events.Images(tag)]
        counts[tag] = sum(np.asarray(p.convert("L")).std() > 5 for p in pictures)
    return counts


def spawn(args: list[str], **env: str) -> subprocess.Popen:
    """A child in its own process group, so that a timeout can end its children too."""
    return subprocess.Popen(
        args,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def glimpse(*args: str) -> subprocess.Popen:
    return spawn([sys.executable, "-m", "api.cli", *args])


def finish(process: subprocess.Popen) -> str:
    try:
        out, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 0, err[-2000:]
    return out


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def test_recipes_load_and_overrides_are_checked() -> None:
    for recipe in ("shapes-cpu", "vqa-shapes", "coco-gpu", "vqa-coco-gpu"):
        assert load_config(recipe).epochs > 0
    cfg = load_config("shapes-cpu", ["lr=0.01", "fine_tune=true", "encoder=tiny"])
    assert (cfg.lr, cfg.fine_tune, cfg.encoder) == (0.01, True, "tiny")
    with pytest.raises(ValueError, match="unknown config keys"):
        load_config("shapes-cpu", ["learning_rate=1"])
    with pytest.raises(ValueError, match="no recipe"):
        load_config("imagenet")


def test_killed_run_resumes_to_the_same_weights(world: Path, tmp_path: Path) -> None:
    args = ["train", "captions", "--data", str(world)]
    full, killed = tmp_path / "full", tmp_path / "killed"
    uninterrupted = glimpse(*args, "--out", str(full), *TINY, "checkpoint_every=1")
    victim = glimpse(*args, "--out", str(killed), *TINY, "checkpoint_every=1")
    state = killed / "train_state.safetensors"
    deadline = time.monotonic() + 120
    while not state.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    finish(uninterrupted)

    resumed = finish(glimpse(*args, "--out", str(killed), "--resume", *TINY, "checkpoint_every=1"))
    assert json.loads(resumed.splitlines()[-1])["CIDEr"] >= 0
    expected, got = weights(full), weights(killed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_corrupt_state_is_a_clear_error(world: Path, tmp_path: Path) -> None:
    (tmp_path / "train_state.safetensors").write_bytes(b"garbage")
    process = glimpse(
        "train", "captions", "--data", str(world), "--out", str(tmp_path), "--resume", *TINY
    )
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2
    assert "cannot resume from" in err and "train_state.safetensors" in err


DDP_SCRIPT = """
import os, sys, torch
from pathlib import Path
from safetensors.torch import save_file
from training.config import load_config
from training.vqa import VQATask
from training.loop import fit
cfg = load_config("vqa-shapes", sys.argv[3:])
torch.manual_seed(int(os.environ["RANK"]) + 1)  # ranks start apart: DDP must sync them
task = VQATask(cfg, Path(sys.argv[1]))
fit(task, cfg, Path(sys.argv[2]))
rank = int(os.environ["RANK"])
save_file({k: v.contiguous() for k, v in task.model.state_dict().items()},
          f"{sys.argv[2]}/rank{rank}.safetensors")
"""


def test_ddp_ranks_hold_identical_weights(world: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    vqa = [a for a in TINY if not a.startswith("model=")] + [
        'model={"d_model": 16, "embed_dim": 16, "question_dim": 16, "attn_dim": 8,'
        ' "classifier_dim": 16}',
        "epochs=1",
    ]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    finish(
        spawn(
            [*command, "--nproc_per_node", "2", str(script), str(world), str(tmp_path), *vqa],
            PYTHONPATH=str(Path.cwd()),
        )
    )
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert (tmp_path / "model" / "answers.json").is_file()
    assert tensorboard_pictures(tmp_path) == {f"val/picture_{i}": 1 for i in range(3)}


def test_fine_tuning_trains_and_exports_the_encoder(world: Path, tmp_path: Path) -> None:
    from models.checkpoint import load_pretrained
    from training.captions import CaptionTask
    from training.loop import fit

    cfg = load_config("shapes-cpu", [*TINY, "fine_tune=true", "epochs=1"])
    torch.manual_seed(0)
    task = CaptionTask(cfg, world)
    before = {k: v.clone() for k, v in task.model.encoder.state_dict().items()}
    fit(task, cfg, tmp_path)
    exported = load_pretrained(tmp_path / "model")
    assert exported.encoder_state is not None
    assert any(not torch.equal(before[k], v) for k, v in exported.encoder_state.items())
    grid, _ = exported.build_encoder()(torch.rand(1, 3, 64, 64))
    assert grid.shape == (1, 16, 64)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))  # TensorBoard scalars
    assert tensorboard_pictures(tmp_path) == {f"val/picture_{i}": 1 for i in range(3)}


def test_attention_targets_lie_on_the_objects_their_words_name(world: Path) -> None:
    from training.captions import CaptionTask
    from training.data.shapes_scene import COLORS, SHAPES, SIZES, objects_from_coco

    task = CaptionTask(load_config("shapes-cpu", [*TINY, "attention_supervision=1"]), world)
    instances = json.loads((world / "annotations" / "instances_train.json").read_text())
    objects = objects_from_coco(instances)
    grid = task.head.config.grid
    cells = grid[0] * grid[1]
    data = task.train_set
    supervised = 0
    for (record, _), ids, flat in zip(data.pairs, data.caption_ids, task.targets, strict=True):
        words = data.tokenizer.convert_ids_to_tokens(ids.tolist())
        supervised += len(flat) > 0
        for step, cell in zip((flat // cells).tolist(), (flat % cells).tolist(), strict=True):
            word = words[step + 1]  # step t writes the word after <bos> and t words
            assert word in {*SIZES, *COLORS, *SHAPES}, word
            row, col = divmod(cell, grid[1])
            x, y = (col + 0.5) * 256 / grid[1], (row + 0.5) * 256 / grid[0]
            assert any(
                word in (o.size, o.color, o.shape)
                and o.box[0] - 8 <= x <= o.box[0] + o.box[2] + 8
                and o.box[1] - 8 <= y <= o.box[1] + o.box[3] + 8
                for o in objects[data.records[record].image_id]
            ), (words, step, cell)
    assert supervised > 0.9 * len(data)
    task.model.eval()  # no dropout: the two losses see the same pass
    batch = task.batches(0)[0]
    inputs, captions, _, _ = data.batch(batch)
    cross_entropy = task.model(inputs, captions)[2]
    assert task.loss(task.model, batch, torch.device("cpu")) > cross_entropy + 0.1


def test_attention_supervision_without_instances_is_a_clear_error(
    world: Path, tmp_path: Path
) -> None:
    from training.captions import CaptionTask

    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").symlink_to(world / "images")
    for split in ("train", "val"):
        name = f"captions_{split}.json"
        (tmp_path / "annotations" / name).write_text((world / "annotations" / name).read_text())
    with pytest.raises(ValueError, match="instances_train.json"):
        CaptionTask(load_config("shapes-cpu", [*TINY, "attention_supervision=1"]), tmp_path)


@pytest.fixture(scope="module")
def teacher_forced(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny captioner trained for one epoch with teacher forcing, exported."""
    from training.captions import CaptionTask
    from training.loop import fit

    out = tmp_path_factory.mktemp("teacher-forced")
    cfg = load_config("shapes-cpu", [*TINY, "epochs=1"])
    torch.manual_seed(0)
    fit(CaptionTask(cfg, world), cfg, out)
    return out / "model"


def headless(*overrides: str) -> list[str]:
    """TINY without the head's shape, which a run started from a model takes from it."""
    return [*(a for a in TINY if not a.startswith("model=")), *overrides]


def test_self_critical_run_fine_tunes_an_exported_model(
    world: Path, teacher_forced: Path, tmp_path: Path
) -> None:
    from models.checkpoint import load_pretrained
    from training.captions import CaptionTask
    from training.loop import fit

    start = load_pretrained(teacher_forced)
    cfg = load_config(
        "shapes-scst", headless(f"init_from={teacher_forced}", "epochs=1", "batch_size=4")
    )
    task = CaptionTask(cfg, world)
    assert task.tokenizer.get_vocab() == start.tokenizer.get_vocab()
    initial = task.model.state_dict()
    for name, value in start.model.state_dict().items():
        assert torch.equal(initial[name], value.float()), name
    batch = task.batches(0)[0]
    assert max(batch) < len(task.train_set.records)  # batches of images, not of captions
    loss = task.loss(task.model, batch, torch.device("cpu"))
    loss.backward()
    result = fit(task, cfg, tmp_path)
    assert result.best_metrics["score"] == result.best_metrics["correct"]
    tuned = load_pretrained(tmp_path / "model")  # exported with the starting model's head
    assert asdict(tuned.model.config) == asdict(start.model.config)


def test_self_critical_with_attention_supervision_targets_the_sampled_phrases(
    world: Path, teacher_forced: Path
) -> None:
    from training.captions import CaptionTask

    overrides = [f"init_from={teacher_forced}", "batch_size=4"]
    plain = CaptionTask(load_config("shapes-scst", headless(*overrides)), world)
    supervised = CaptionTask(
        load_config("shapes-scst", headless(*overrides, "attention_supervision=1")), world
    )
    batch, cpu = plain.batches(0)[0], torch.device("cpu")
    torch.manual_seed(0)
    without = plain.loss(plain.model.eval(), batch, cpu)
    torch.manual_seed(0)
    with_supervision = supervised.loss(supervised.model.eval(), batch, cpu)
    assert with_supervision > without  # -log(mass) > 0 wherever a sample names an object


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (['model={"d_model": 16}'], "drop the model"),
        (["image_size=32"], "trained on encoder"),
        (["fine_tune=true"], "fine_tune=false"),
    ],
)
def test_self_critical_settings_that_cannot_work_are_clear_errors(
    world: Path, teacher_forced: Path, overrides: list[str], message: str
) -> None:
    from training.captions import CaptionTask

    with pytest.raises(ValueError, match=message):  # from the recipe or from the model
        CaptionTask(
            load_config("shapes-scst", headless(f"init_from={teacher_forced}", *overrides)), world
        )


def test_caption_settings_are_refused_for_vqa() -> None:
    with pytest.raises(ValueError, match="self_critical_samples"):
        load_config("vqa-shapes", ["self_critical_samples=5"])
