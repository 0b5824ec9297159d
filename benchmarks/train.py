"""Training speed on the feature cache: time to build the cache (encoding every image once),
training samples/s of the captioner over cached grids, and the time per epoch this implies
for the default shapes world (8,000 training images, 5 captions each).

    python -m benchmarks.train [--images 64] [--steps 10]

Writes benchmarks/results/train.json.
"""

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import RESULTS, repo_path, table, timed, write_result
from models.captioner import Captioner, CaptionerConfig
from training.config import TrainConfig, load_config
from training.data.coco import CaptionDataset, build_vocabulary, load_caption_split
from training.data.shapes import generate
from training.encoding import build_encoder, feature_cache
from training.loop import bucketed_batches

RECIPE = Path(__file__).resolve().parents[1] / "training" / "configs" / "shapes-cpu.json"
DEFAULT_TRAIN_IMAGES = 8000
DEFAULT_VAL_IMAGES = 1000
CAPTIONS_PER_IMAGE = 5


def cached_split(root: Path, cfg: TrainConfig) -> tuple[CaptionDataset, int]:
    """The train split's captions over its feature cache (built here), and its vocabulary."""
    records = load_caption_split(root, "train")
    tokenizer = build_vocabulary(records, cfg.min_word_count)
    cache = feature_cache(
        build_encoder(cfg), cfg, root, "train", {r.image_id: r.path for r in records}
    )
    data = CaptionDataset(records, tokenizer, max_length=cfg.max_caption_len, features=cache)
    return data, len(tokenizer)


def train_steps(data: CaptionDataset, vocab: int, cfg: TrainConfig, steps: int) -> tuple:
    """A closure running `steps` optimiser steps on the cached grids, and its sample count."""
    grid_dim = data[0][0].shape  # (L, D)
    side = int(grid_dim[0] ** 0.5)
    model = Captioner(CaptionerConfig(vocab, grid_dim[1], (side, side), **cfg.model)).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    lengths = [len(ids) for ids in data.caption_ids]
    batches = bucketed_batches(lengths, cfg.batch_size, cfg.seed, 0)[:steps]

    def run() -> None:
        for batch in batches:
            inputs, captions, _, _ = data.batch(batch)
            optimiser.zero_grad(set_to_none=True)
            model(inputs.float(), captions[:, :-1], captions[:, 1:])[2].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimiser.step()

    return run, sum(len(b) for b in batches)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=RECIPE, help="training recipe (JSON)")
    parser.add_argument("--images", type=int, default=64, help="training images to generate")
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per repeat")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)

    cfg = load_config(args.config)
    if args.batch_size:
        cfg = replace(cfg, batch_size=args.batch_size)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, {"train": args.images}, seed=3, workers=1, progress=False)
        started = time.perf_counter()
        data, vocab = cached_split(root, cfg)  # encodes every image once
        build_s = time.perf_counter() - started
        run, samples = train_steps(data, vocab, cfg, args.steps)
        timing = timed(run, args.repeats)
    encoded = args.images
    samples_s = samples / timing["median_s"]
    epoch_samples = DEFAULT_TRAIN_IMAGES * CAPTIONS_PER_IMAGE
    row = {
        "cache_img_s": encoded / build_s,
        "cache_default_world_min": (DEFAULT_TRAIN_IMAGES + DEFAULT_VAL_IMAGES)
        / (encoded / build_s)
        / 60,
        "train_samples_s": samples_s,
        "epoch_default_world_min": epoch_samples / samples_s / 60,
        "spread": timing["spread"],
    }
    print(table([row], list(row)))
    result = {
        "config": repo_path(args.config),
        "batch_size": cfg.batch_size,
        "encoder": cfg.encoder,
        "images_encoded": encoded,
        "cache_build_s": build_s,
        "samples_per_repeat": samples,
        "timing": timing,
        **row,
    }
    write_result(args.out, "train", result)
    return result


if __name__ == "__main__":
    main()
