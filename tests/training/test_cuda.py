"""Training and decoding on a CUDA GPU with the real recipes and encoder (skipped where there
is none): the feature cache encoded on the GPU, AMP in bf16 and in fp16 (with its loss
scaling), a resumed run, self-critical training from the first stage's model, VQA, exported
models that load on a CPU, and the same numbers on either device."""

import math
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_pretrained
from training.config import load_config
from training.loop import FitResult, fit
from training.tasks import build_task

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SMALL = ["batch_size=8", "eval_max_images=8", "device=cuda"]
BUNDLED_CAPTIONER = Path(__file__).resolve().parents[2] / "models" / "pretrained" / "captioner"


def train(recipe: str, world: Path, out: Path, *overrides: str, resume: bool = False) -> FitResult:
    cfg = load_config(recipe, [*SMALL, *overrides])
    torch.manual_seed(cfg.seed)
    return fit(build_task(cfg, world), cfg, out, resume=resume)


def exported_on_the_cpu(out: Path) -> dict[str, torch.Tensor]:
    """The weights of the run's exported model, loaded as a CPU-only host would."""
    state = load_pretrained(out / "model").model.state_dict()
    assert {t.device.type for t in state.values()} == {"cpu"}
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    return state


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_captioner_trains_under_amp_and_resumes(tiny_world: Path, tmp_path: Path, amp: str) -> None:
    first = train("shapes-cpu", tiny_world, tmp_path, "epochs=1", f"amp={amp}")
    assert [h["epoch"] for h in first.history] == [1]
    before = exported_on_the_cpu(tmp_path)
    resumed = train("shapes-cpu", tiny_world, tmp_path, "epochs=2", f"amp={amp}", resume=True)
    assert [h["epoch"] for h in resumed.history] == [2]  # epoch 1 was not trained again
    assert all(math.isfinite(h["score"]) for h in first.history + resumed.history)
    if resumed.best_metrics:  # epoch 2 scored best and was exported: it moved the weights
        after = exported_on_the_cpu(tmp_path)
        assert any(not torch.equal(before[k], after[k]) for k in before)


def test_self_critical_stage_and_vqa_train(tiny_world: Path, tmp_path: Path) -> None:
    train("shapes-cpu", tiny_world, tmp_path / "first", "epochs=1")
    start = f"init_from={tmp_path / 'first' / 'model'}"
    scst = train("shapes-scst", tiny_world, tmp_path / "scst", start, "epochs=1")
    assert 0.0 <= scst.best_metrics["correct"] <= 1.0
    exported_on_the_cpu(tmp_path / "scst")
    vqa = train("vqa-shapes-grounded", tiny_world, tmp_path / "vqa", "epochs=1")
    assert 0.0 <= vqa.best_metrics["accuracy"] <= 1.0
    exported_on_the_cpu(tmp_path / "vqa")


def test_the_bundled_captioner_scores_the_same_on_the_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full fp32 on both
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model = load_pretrained(BUNDLED_CAPTIONER).model.float().eval()
    cells = model.config.grid[0] * model.config.grid[1]
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(4, cells, model.config.feat_dim, generator=generator).abs()
    words = torch.randint(4, model.config.vocab_size, (4, 8), generator=generator)
    with torch.inference_mode():
        cpu_logits, cpu_alphas, _ = model(features, words)
        gpu_logits, gpu_alphas, _ = model.cuda()(features.cuda(), words.cuda())
    torch.testing.assert_close(gpu_logits.cpu(), cpu_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gpu_alphas.cpu(), cpu_alphas, rtol=1e-4, atol=1e-5)
