"""The GPU side of COCO-size training, measured rather than estimated: milliseconds per
optimiser step of the `coco-gpu` captioner, the `coco-scst` self-critical stage and the
`vqa-coco-gpu` model at their recipes' sizes, under the recipes' AMP (bf16) and in fp32;
beam-3 validation decoding; and the GPU time of an epoch these imply.

The inputs are random tensors already on the device, so this times the model's compute
alone; building batches is the CPU's side (`benchmarks.coco_scale`). Every step goes through
`training.loop.train_step`: autocast, backward, clipping, AdamW and the schedule as trained.

    python -m benchmarks.gpu_step [--steps 20] [--device cuda]

Writes benchmarks/results/gpu_step.json.
"""

import argparse
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch import Tensor, nn

from benchmarks.common import RESULTS, table, timed, write_result
from models.captioner import Captioner, CaptionerConfig, attention_penalty
from models.decoding import beam_search, greedy
from models.text import PAD_ID
from models.vqa import VQAConfig, VQAModel
from training.config import TrainConfig, load_config
from training.distributed import pick_device
from training.loop import Task, start, train_step
from training.self_critical import sample_with_grad, self_critical_loss


@dataclass(frozen=True)
class Sizes:
    """The inputs' sizes: COCO's by default (the Karpathy split as benchmarks.coco_scale
    loads it, ResNet-101 layer3 grids at stride 16), tiny for the smoke test."""

    caption_vocab: int = 9476 + 4  # words seen 5+ times in training, and the special tokens
    grid_features: int = 1024  # ResNet-101 layer3 channels
    question_vocab: int = 15_000  # VQA v2's order; the embedding's size barely moves the step
    side: int | None = None  # the grid's side; None: the recipe's image_size / 16

    def grid(self, image_size: int) -> tuple[int, int]:
        side = self.side or image_size // 16
        return side, side


SMOKE = Sizes(caption_vocab=40, grid_features=8, question_vocab=40, side=2)
TRAIN_PAIRS = 566_776  # (image, caption) pairs of train + restval
TRAIN_IMAGES = 113_287
VAL_IMAGES = 5000  # the recipes' eval_max_images
MEAN_CAPTION_STEPS = 12  # 10.6 words on average, and <eos>
VQA_TRAIN_QUESTIONS = 443_757  # VQA v2 train
VQA_QUESTION_WORDS = (4, 14)  # lengths drawn uniformly in this range (mean about 6 words)
DECODE_BATCH = 64  # images a validation batch decodes (training.captions)


@dataclass
class Synthetic:
    """What `training.loop.start` and `train_step` read of a task (its model, how many
    batches an epoch has, and the loss), over one batch of inputs kept on the device."""

    model: nn.Module
    loss_of: Callable[[nn.Module], Tensor]

    def batches(self, epoch: int) -> list[list[int]]:
        return [[0]] * 1000  # the schedule's length: any will do for timing

    def loss(self, model: nn.Module, batch: list[int], device: torch.device) -> Tensor:
        return self.loss_of(model)


def random_grids(batch: int, sizes: Sizes, image_size: int, device: torch.device) -> Tensor:
    rows, cols = sizes.grid(image_size)
    return torch.randn(batch, rows * cols, sizes.grid_features, device=device)


def captioner(cfg: TrainConfig, sizes: Sizes) -> Captioner:
    grid = sizes.grid(cfg.image_size)
    return Captioner(CaptionerConfig(sizes.caption_vocab, sizes.grid_features, grid, **cfg.model))


def teacher_forcing(cfg: TrainConfig, sizes: Sizes, steps: int, device: torch.device) -> Synthetic:
    """coco-gpu's loss: cross-entropy and the doubly stochastic attention penalty."""
    features = random_grids(cfg.batch_size, sizes, cfg.image_size, device)
    captions = torch.randint(4, sizes.caption_vocab, (cfg.batch_size, steps + 1), device=device)
    words, targets = captions[:, :-1], captions[:, 1:]

    def loss(model: nn.Module) -> Tensor:
        _, alphas, caption_loss = model(features, words, targets)
        return caption_loss + cfg.alpha_c * attention_penalty(alphas, targets != PAD_ID)

    return Synthetic(captioner(cfg, sizes), loss)


def self_critical(cfg: TrainConfig, sizes: Sizes, device: torch.device) -> Synthetic:
    """coco-scst's loss: sampled captions with their graph, the greedy caption as baseline
    (decoded without a graph), and rewards drawn at random (CIDEr-D is scored on the CPU)."""
    b, n = cfg.batch_size, cfg.self_critical_samples
    features = random_grids(b, sizes, cfg.image_size, device)

    def loss(model: nn.Module) -> Tensor:
        head = cast(Captioner, model)
        samples = sample_with_grad(head, features, n, cfg.max_caption_len)
        with torch.no_grad():
            greedy(head, features, cfg.max_caption_len)
        rewards = torch.rand(b, n, device=device)
        return self_critical_loss(samples.log_probs, samples.mask, rewards, rewards.mean(1, True))

    return Synthetic(captioner(cfg, sizes), loss)


def vqa(cfg: TrainConfig, sizes: Sizes, device: torch.device) -> Synthetic:
    """vqa-coco-gpu's loss: soft cross-entropy of one right answer per question."""
    b, (shortest, longest) = cfg.batch_size, VQA_QUESTION_WORDS
    grid = sizes.grid(cfg.image_size)
    config = VQAConfig(
        sizes.question_vocab, cfg.num_answers, sizes.grid_features, grid, **cfg.model
    )
    features = random_grids(b, sizes, cfg.image_size, device)
    questions = torch.randint(4, sizes.question_vocab, (b, longest), device=device)
    lengths = torch.randint(shortest, longest + 1, (b,))
    targets = torch.zeros(b, cfg.num_answers, device=device)
    targets[torch.arange(b), torch.randint(0, cfg.num_answers, (b,))] = 1.0

    def loss(model: nn.Module) -> Tensor:
        return model(features, questions, lengths, targets)[2]

    return Synthetic(VQAModel(config), loss)


def synchronised(run: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """`run` then a wait for the device, so that a timing covers the queued kernels."""

    def call() -> None:
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return call


def step_row(
    name: str, task: Synthetic, cfg: TrainConfig, examples: int, steps: int, repeats: int
) -> dict:
    """Median ms of `steps` optimiser steps of `task` under the recipe `cfg`, the peak device
    memory, and the GPU minutes of an epoch of `examples` at that pace."""
    with tempfile.TemporaryDirectory() as tmp:
        run = start(cast(Task, task), cfg, Path(tmp) / "state.safetensors", resume=False)
    device, cuda = run.device, run.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    def steps_once() -> None:
        for _ in range(steps):
            train_step(cast(Task, task), run, [0])

    timing = timed(synchronised(steps_once, device), repeats)
    ms = 1000 * timing["median_s"] / steps
    return {
        "step": name,
        "amp": cfg.amp if run.amp_dtype is not None else "none",
        "batch": cfg.batch_size,
        "ms_per_step": ms,
        "spread": timing["spread"],
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        "epoch_min": math.ceil(examples / cfg.batch_size) * ms / 60_000,
    }


def decode_row(cfg: TrainConfig, sizes: Sizes, device: torch.device, repeats: int) -> dict:
    """Beam-3 validation as the loop runs it: batches of 64 images, up to max_caption_len
    words. An untrained model seldom says <eos>, so every beam runs the full length: an
    upper bound for a trained one."""
    model = captioner(cfg, sizes).to(device).eval()
    features = random_grids(DECODE_BATCH, sizes, cfg.image_size, device)
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")

    def decode() -> None:
        with torch.inference_mode(), autocast:
            beam_search(model, features, cfg.eval_beam_size, cfg.max_caption_len)

    timing = timed(synchronised(decode, device), repeats)
    batches = math.ceil(VAL_IMAGES / DECODE_BATCH)
    return {
        "ms_per_batch": 1000 * timing["median_s"],
        "spread": timing["spread"],
        "validation_min": batches * timing["median_s"] / 60,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", help="cuda, cpu, or auto")
    parser.add_argument("--compile", action="store_true", help="also coco-gpu under compile")
    parser.add_argument("--smoke", action="store_true", help="tiny batches and grids (tests)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    shrink = ["batch_size=2", "max_caption_len=3", "num_answers=5"] if args.smoke else []
    sizes = SMOKE if args.smoke else Sizes()
    torch.manual_seed(0)

    def recipe(name: str, *overrides: str) -> TrainConfig:
        return load_config(name, [f"device={device}", *shrink, *overrides])

    def measure(name: str, task: Synthetic, cfg: TrainConfig, examples: int) -> dict:
        return step_row(name, task, cfg, examples, args.steps, args.repeats)

    rows = []
    for amp in ("bf16", "none"):
        cfg = recipe("coco-gpu", f"amp={amp}")
        for words in (MEAN_CAPTION_STEPS, cfg.max_caption_len):
            task = teacher_forcing(cfg, sizes, words, device)
            rows.append(measure(f"coco-gpu, {words} steps", task, cfg, TRAIN_PAIRS))
    if args.compile:
        cfg = recipe("coco-gpu", "compile=true")
        task = teacher_forcing(cfg, sizes, MEAN_CAPTION_STEPS, device)
        name = f"coco-gpu, {MEAN_CAPTION_STEPS} steps, compiled"
        rows.append(measure(name, task, cfg, TRAIN_PAIRS))
    cfg = recipe("coco-scst")
    task = self_critical(cfg, sizes, device)
    rows.append(measure("coco-scst, 5 samples an image", task, cfg, TRAIN_IMAGES))
    for size in (448, 224):
        cfg = recipe("vqa-coco-gpu", f"image_size={size}")
        task = vqa(cfg, sizes, device)
        rows.append(measure(f"vqa-coco-gpu, {size} px", task, cfg, VQA_TRAIN_QUESTIONS))
    cfg = recipe("coco-gpu")
    validation = decode_row(cfg, sizes, device, args.repeats)

    print(table(rows, ["step", "amp", "batch", "ms_per_step", "spread", "peak_gib", "epoch_min"]))
    print(f"beam-3 validation, {VAL_IMAGES} images: {validation['validation_min']:.2f} min")
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "smoke": args.smoke,
        "steps_per_repeat": args.steps,
        "rows": rows,
        "validation_beam3": validation,
    }
    write_result(args.out, "gpu_step", result)
    return result


if __name__ == "__main__":
    main()
