"""Reading caption batches from a feature cache, as training does, for `benchmarks.coco_scale`.

Each pass builds the same batches: cold (the cache evicted from the page cache first) and warm,
both as the training step does (`CaptionDataset.batch`: one gather a batch, the grids left in
float16 for the model to convert on its device); through DataLoader workers, example by
example as a DataLoader collates; and the floor (the gather alone, no captions).
"""

import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerFast

from models.text import encode
from training.config import TrainConfig
from training.data.coco import CaptionDataset, CaptionRecord, collate_captions
from training.features import FeatureCache
from training.loop import bucketed_batches

MB = 1024 * 1024


def read_passes(
    train: list[CaptionRecord],
    tokenizer: PreTrainedTokenizerFast,
    cache: FeatureCache,
    array: Path,
    cfg: TrainConfig,
    batches: int,
    workers: int,
) -> dict:
    """Up to `batches` batches over the cached images, read in every pass, by pass name."""
    cached = set(cache.image_ids)
    subset = CaptionDataset(
        [r for r in train if r.image_id in cached],
        tokenizer,
        features=cache,
        max_length=cfg.max_caption_len,
    )
    lengths = [len(encode(tokenizer, subset.records[r].captions[c])) for r, c in subset.pairs]
    order = bucketed_batches(lengths, cfg.batch_size, cfg.seed, 0)[:batches]
    evicted = evict_from_page_cache(array)
    reading = {"cold": {**read_batches(subset, order, 0), "evicted": evicted}}
    reading["warm"] = read_batches(subset, order, 0)
    if workers:
        reading[f"warm, {workers} DataLoader workers"] = read_batches(subset, order, workers)
    reading["floor: one fp16 gather a batch"] = gather_floor(cache, subset, order)
    return reading


def evict_from_page_cache(path: Path) -> bool:
    """Drop a file's pages from the OS cache, so the next read comes from disk (Linux)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def read_batches(dataset: CaptionDataset, batches: list[list[int]], workers: int) -> dict:
    """Time building every batch as the training step does (workers=0) or through a DataLoader."""
    start = time.perf_counter()
    grid_bytes = 0
    if workers == 0:
        for batch in batches:
            inputs = dataset.batch(batch).inputs  # (B, L, D)
            grid_bytes += inputs.numel() * 2  # read as fp16
    else:
        loader = DataLoader(
            dataset, batch_sampler=batches, collate_fn=collate_captions, num_workers=workers
        )
        for inputs, *_ in loader:
            grid_bytes += inputs.numel() * 2
    return throughput(batches, time.perf_counter() - start, grid_bytes)


def gather_floor(cache: FeatureCache, dataset: CaptionDataset, batches: list[list[int]]) -> dict:
    """The least a batch's grids can cost: one fp16 gather from the memory map, no conversion.

    The gap to the warm pass is what looking the rows up and padding the captions cost.
    """
    rows = [
        sorted(cache.row(dataset.records[dataset.pairs[i][0]].image_id) for i in batch)
        for batch in batches
    ]
    start, grid_bytes = time.perf_counter(), 0
    for batch_rows in rows:
        grids = torch.from_numpy(cache.features[batch_rows])  # (B, L, D) fp16
        grid_bytes += grids.numel() * 2
    return throughput(batches, time.perf_counter() - start, grid_bytes)


def throughput(batches: list[list[int]], seconds: float, grid_bytes: int) -> dict:
    examples = sum(len(b) for b in batches)
    return {
        "batches": len(batches),
        "examples": examples,
        "seconds": round(seconds, 3),
        "ms_per_batch": round(1000 * seconds / len(batches), 2),
        "examples_per_s": round(examples / seconds, 1),
        "grid_mb_per_s": round(grid_bytes / MB / seconds, 1),
    }
