"""The caption data side at COCO's size: `python -m benchmarks.coco_scale [--train N]`.

COCO itself cannot be downloaded here, so this writes the synthetic Karpathy-format COCO of
`training/data/synthetic_coco.py` (by default the real 113,287 training + 5,000 val + 5,000
test images, ~617k captions) and times, with the peak resident memory of each step, what
`glimpse train captions --config coco-gpu` does on the CPU side: load the splits, build the
vocabulary, index and tokenise every caption, bucket the batches, and read batches as the
training step does (`CaptionDataset.batch`) from a feature cache of the recipe's grid shape.
The full cache (113k x 256 x 1024 fp16 = 59 GB at the recipe's 256 px) is not written: a
stated number of images is, and the per-batch cost is extrapolated to an epoch. Results go to
`benchmarks/results/coco_scale.json` and a table is printed.
"""

import argparse
import gc
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from benchmarks.coco_reading import MB, read_passes
from benchmarks.common import (
    RESULTS,
    current_peak_rss_mb,
    machine,
    proc_field,
    proc_kib,
    reset_peak_rss,
    table,
    write_json,
)
from models.encoders import create_encoder
from models.text import SPECIALS, encode
from training.config import TrainConfig, load_config
from training.data.coco import CaptionDataset, build_vocabulary
from training.data.coco import load_caption_split as load_split
from training.data.synthetic_coco import (
    COCO_TRAIN_IMAGES,
    KARPATHY_SPLIT_SIZES,
    expected_vocabulary_size,
    generate_synthetic_coco,
    write_random_grids,
)
from training.features import FeatureCache
from training.loop import bucketed_batches

VOCABULARY_AT_FULL_SIZE = (9_000, 10_000)  # Karpathy's COCO vocabulary at min_count 5: ~9.5k


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--train", type=int, default=COCO_TRAIN_IMAGES, help="training images")
    parser.add_argument("--val", type=int, default=KARPATHY_SPLIT_SIZES["val"])
    parser.add_argument("--test", type=int, default=KARPATHY_SPLIT_SIZES["test"])
    parser.add_argument("--recipe", default="coco-gpu", help="recipe giving batch and grid shape")
    parser.add_argument(
        "--cache-images", type=int, default=4096, help="training images whose grids are written"
    )
    parser.add_argument("--batches", type=int, default=200, help="batches read in each pass")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="DataLoader workers for the extra pass (0 skips it)",
    )
    parser.add_argument("--images", action="store_true", help="also write the tiny JPEGs")
    parser.add_argument("--workdir", type=Path, help="keep the data here (default: a temp dir)")
    parser.add_argument(
        "--results", type=Path, default=RESULTS / "coco_scale.json", help="results JSON path"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if min(args.train, args.cache_images, args.batches, args.threads or 1) < 1:
        parser.error("--train, --cache-images, --batches and --threads must be >= 1")
    if min(args.val, args.test, args.workers) < 0:
        parser.error("--val, --test and --workers must be >= 0")
    return args


class Steps:
    """Seconds, peak RSS and RSS after each named step."""

    def __init__(self) -> None:
        self.figures: dict[str, dict] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[dict]:
        """Measure the body; what it puts in the yielded dict is kept with the figures."""
        gc.collect()
        exact = reset_peak_rss()
        before_mb = _rss_mb()
        start = time.perf_counter()
        extra: dict = {}
        yield extra
        seconds = time.perf_counter() - start
        self.figures[name] = {
            "seconds": round(seconds, 3),
            "rss_before_mb": round(before_mb, 1),
            "peak_rss_mb": round(current_peak_rss_mb(), 1),
            "rss_after_mb": round(_rss_mb(), 1),
            "peak_is_per_step": exact,
            **extra,
        }


def _rss_mb() -> float:
    return (proc_kib("VmRSS") or 0) / 1024


def machine_info() -> dict:
    """The shared machine facts in this result's own layout, plus what the data side depends
    on: the CPU model, the memory and numpy."""
    facts = machine()
    shared = ("date", "cpu_count", "platform", "python", "torch", "torch_threads")
    return {
        **{key: facts[key] for key in shared},
        "cpu": proc_field("model name", "/proc/cpuinfo") or facts["processor"],
        "memory_gb": round((proc_kib("MemTotal", "/proc/meminfo") or 0) / MB, 1),
        "numpy": np.__version__,
        "load_average_1min": facts["load_average"][0],
    }


def grid_shape(recipe: str) -> tuple[TrainConfig, tuple[int, int], int]:
    """The recipe's config, and its encoder's grid and channels (built on the meta device:
    shapes only, no weights allocated or needed)."""
    cfg = load_config(recipe)
    options = {k: v for k, v in cfg.encoder_options.items() if k != "weights"}
    with torch.device("meta"):
        encoder = create_encoder(cfg.encoder, pretrained=False, **options)
    return cfg, encoder.grid_size(cfg.image_size), encoder.out_dim


def measure(root: Path, args: argparse.Namespace) -> dict:
    """Every measurement of the data side; returns the results document."""
    cfg, grid, dim = grid_shape(args.recipe)
    facts = machine_info()
    steps = Steps()
    with steps.step("generate the synthetic set") as extra:
        made = generate_synthetic_coco(
            root, args.train, args.val, args.test, images=args.images, seed=args.seed
        )
        extra.update(captions=made.sentences, json_mb=_megabytes(root / "dataset_coco.json"))
    with steps.step("load train split (restval folded)") as extra:
        train = load_split(root, "train")
        extra["images"] = len(train)
    with steps.step("load val split") as extra:
        extra["images"] = len(load_split(root, "val"))
    train_tokens = sum(len(c.split()) for r in train for c in r.captions)
    with steps.step(f"vocabulary (min_count {cfg.min_word_count})") as extra:
        tokenizer = build_vocabulary(train, cfg.min_word_count)
        extra["words"] = len(tokenizer) - len(SPECIALS)
    vocabulary = {
        "words": len(tokenizer) - len(SPECIALS),
        "expected": round(expected_vocabulary_size(train_tokens, cfg.min_word_count)),
        "min_count": cfg.min_word_count,
        "training_tokens": train_tokens,
    }
    cached_ids = sorted(r.image_id for r in train)[: args.cache_images]
    cache_dir = root / "features" / f"random-{grid[0]}x{grid[1]}x{dim}"
    with steps.step("write random grids (fraction)") as extra:
        array = write_random_grids(cache_dir, "train", cached_ids, grid, dim, seed=args.seed)
        extra["images"] = len(cached_ids)
        extra["mb"] = _megabytes(array)
    cache = FeatureCache.open(cache_dir, "train")
    with steps.step("caption dataset index") as extra:
        dataset = CaptionDataset(train, tokenizer, features=cache, max_length=cfg.max_caption_len)
        extra["pairs"] = len(dataset)
    with steps.step("tokenise every caption (as CaptionTask)"):
        lengths = [len(encode(tokenizer, train[r].captions[c])) for r, c in dataset.pairs]
    with steps.step("bucketed batches (one epoch)") as extra:
        extra["batches"] = len(bucketed_batches(lengths, cfg.batch_size, cfg.seed, 0))
    reading = read_passes(train, tokenizer, cache, array, cfg, args.batches, args.workers)
    with steps.step("tokenise every caption (encode_batch)"):
        texts = [train[r].captions[c] for r, c in dataset.pairs]
        tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    check_vocabulary(vocabulary, args.train)
    return {
        "benchmark": "coco_scale",
        "machine": {**facts, "load_average_1min_end": machine()["load_average"][0]},
        "recipe": {
            "name": args.recipe,
            "encoder": cfg.encoder,
            "image_size": cfg.image_size,
            "grid": list(grid),
            "dim": dim,
            "batch_size": cfg.batch_size,
            "max_caption_len": cfg.max_caption_len,
        },
        "images": made.split_images,
        "steps": steps.figures,
        "vocabulary": vocabulary,
        "feature_cache": cache_size(grid, dim, args.train, len(cached_ids)),
        "reading": reading,
        "epoch": extrapolate(steps.figures, reading, len(dataset), cfg.batch_size),
    }


def check_vocabulary(vocabulary: dict, train_images: int) -> None:
    low, high = VOCABULARY_AT_FULL_SIZE
    if train_images == COCO_TRAIN_IMAGES and not low <= vocabulary["words"] <= high:
        raise RuntimeError(f"vocabulary of {vocabulary['words']} words, expected {low}..{high}")


def cache_size(grid: tuple[int, int], dim: int, train_images: int, measured: int) -> dict:
    per_image = grid[0] * grid[1] * dim * 2  # fp16
    return {
        "bytes_per_image": per_image,
        "measured_images": measured,
        "measured_fraction": round(measured / train_images, 5),
        "full_train_gb": round(per_image * train_images / 1e9, 1),
        "full_train_gb_at_224px_14x14": round(14 * 14 * dim * 2 * train_images / 1e9, 1),
        "note": "the full cache is not written here: reading is measured on measured_images "
        "random grids of the recipe's shape and extrapolated per batch",
    }


def extrapolate(steps: dict, reading: dict, pairs: int, batch_size: int) -> dict:
    """Data-side seconds of one epoch at this size, and of the one-off start of a run."""
    batches = math.ceil(pairs / batch_size)
    bucketing = next(v["seconds"] for k, v in steps.items() if k.startswith("bucketed"))
    startup = sum(
        v["seconds"]
        for k, v in steps.items()
        if k.startswith(("load", "vocabulary", "caption dataset", "tokenise every caption (as"))
    )
    return {
        "pairs": pairs,
        "batches": batches,
        "startup_seconds": round(startup, 1),
        "seconds_per_epoch": {
            name: round(batches * figures["ms_per_batch"] / 1000 + bucketing, 1)
            for name, figures in reading.items()
        },
        "note": "CaptionTask.loss builds each batch in the training process, before the GPU "
        "step, so these seconds add to every epoch unless a DataLoader overlaps them",
    }


def print_table(results: dict) -> None:
    facts = results["machine"]
    print(f"\nCOCO-scale data side on {facts['cpu_count']} CPUs ({facts['cpu']})\n")
    steps = [
        {"step": name, **step, "notes": _notes(step)} for name, step in results["steps"].items()
    ]
    print(table(steps, ["step", "seconds", "peak_rss_mb", "notes"]))
    vocabulary = results["vocabulary"]
    print(f"vocabulary: {vocabulary['words']:,} words, expected {vocabulary['expected']:,}\n")
    batches = f"batches of {results['recipe']['batch_size']}"
    passes = [{batches: name, **figures} for name, figures in results["reading"].items()]
    print(table(passes, [batches, "ms_per_batch", "examples_per_s", "grid_mb_per_s"]))
    epoch, cache = results["epoch"], results["feature_cache"]
    print(f"\none epoch: {epoch['pairs']:,} pairs in {epoch['batches']:,} batches")
    print(f"  start-up (load, vocabulary, index, tokenise): {epoch['startup_seconds']} s")
    for name, seconds in epoch["seconds_per_epoch"].items():
        print(f"  data side per epoch, {name}: {seconds / 60:.1f} min")
    print(
        f"feature cache of the training split: {cache['full_train_gb']} GB "
        f"({cache['full_train_gb_at_224px_14x14']} GB at 224 px); "
        f"measured on {cache['measured_images']:,} images"
    )


def _megabytes(path: Path) -> float:
    return round(path.stat().st_size / MB, 1)


def _notes(step: dict) -> str:
    skip = {"seconds", "rss_before_mb", "peak_rss_mb", "rss_after_mb", "peak_is_per_step"}
    return ", ".join(f"{k} {v:,}" for k, v in step.items() if k not in skip)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = measure(args.workdir, args)
    else:
        with tempfile.TemporaryDirectory(prefix="glimpse-coco-scale-") as workdir:
            results = measure(Path(workdir), args)
    write_json(args.results, results)
    print_table(results)
    print(f"\nresults: {args.results}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
