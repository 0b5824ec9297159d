"""docs/coco.md's two captioner stages on a CPU: `coco-gpu`, then `coco-scst` from its export,
shrunk by overrides onto the tiny encoder and a tiny synthetic COCO (no shapes-world objects:
the CIDEr-D reward needs captions only)."""

from pathlib import Path

import pytest
import torch

from tiny_runs import TINY, headless
from training.config import load_config
from training.data.synthetic_coco import generate_synthetic_coco

SMALL = ["min_word_count=1", "epochs=1", "eval_max_images=2", "batch_size=16"]


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic-coco")
    generate_synthetic_coco(root, 12, 2, 1, image_size=16, seed=2)
    return root


@pytest.fixture(scope="module")
def coco_gpu(coco: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model directory of a shrunk `coco-gpu` run."""
    from training.loop import fit
    from training.tasks import build_task

    out = tmp_path_factory.mktemp("coco-gpu")
    cfg = load_config("coco-gpu", [*TINY, *SMALL])
    torch.manual_seed(0)
    fit(build_task(cfg, coco), cfg, out)
    return out / "model"


def test_coco_scst_fine_tunes_the_coco_gpu_export_on_cider_d(
    coco: Path, coco_gpu: Path, tmp_path: Path
) -> None:
    from models.checkpoint import load_pretrained
    from models.decoding import DecodeOptions, decode_captions
    from training.captions_self_critical import SelfCriticalTask
    from training.document_frequencies import frequencies_path
    from training.loop import fit
    from training.tasks import build_task

    cfg = load_config("coco-scst", headless(f"init_from={coco_gpu}", *SMALL, "batch_size=6"))
    task = build_task(cfg, coco)
    assert isinstance(task, SelfCriticalTask)
    result = fit(task, cfg, tmp_path)
    assert result.best_metrics["score"] == result.best_metrics["CIDEr"]  # what is rewarded
    assert frequencies_path(coco).is_file()  # counted once, beside the data
    start, tuned = load_pretrained(coco_gpu), load_pretrained(tmp_path / "model")
    assert tuned.tokenizer.get_vocab() == start.tokenizer.get_vocab()
    grid = torch.rand(2, *tuned.model.config.grid, tuned.model.config.feat_dim).flatten(1, 2)
    captions = decode_captions(tuned.model.float(), grid, DecodeOptions(beam_size=2, max_len=5))
    assert len(captions) == 2


def test_the_truth_reward_on_data_without_objects_fails_when_the_task_is_built(
    coco: Path, coco_gpu: Path
) -> None:
    from training.tasks import build_task

    overrides = headless(f"init_from={coco_gpu}", 'reward={"truth": 1.0}')
    with pytest.raises(ValueError, match="truth reward.*instances_train.json"):
        build_task(load_config("coco-scst", overrides), coco)
