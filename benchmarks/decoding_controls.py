"""Decoding controls: what several captions and per-request seeds cost, and that a seed holds
in a batch, on the bundled captioner and shapes images.

    python -m benchmarks.decoding_controls [--model DIR] [--batches 1 8 32]

Writes benchmarks/results/decoding_controls.json. Per batch size B: plain beam search (K = 3)
against the same search ranked with the repeat penalty (what the service does by default) and
the 5 best of a K = 5 search; sampling with one generator for the batch against one
per image (what the server does, so that a seed does not depend on the batch) and 5 samples
per image. Asserts, on the real model, that each image's seeded samples are the same alone and
in the batch, and that the first of the n best is the plain beam search caption.
"""

from collections.abc import Callable

import torch

from benchmarks.common import (
    captioner_engine,
    captioner_parser,
    repo_path,
    shapes_images,
    table,
    timed,
    write_result,
)
from models.decoding import REPEAT_PENALTY, beam_search, sample

MAX_LEN = 20


def seeded(model, grids, seeds: list[int], n: int) -> list[list[list[int]]]:
    """n samples per image, image i drawn from a generator seeded with seeds[i]."""
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    captions = sample(model, grids, MAX_LEN, 1.0, gens, num_captions=n)
    return [[c.tokens for c in [best, *best.alternatives]] for best in captions]


def checks(model, grids) -> dict:
    """The seeded samples of each image alone equal those in the batch; n-best starts plain."""
    seeds = list(range(100, 100 + len(grids)))
    batched = seeded(model, grids, seeds, 5)
    alone = [seeded(model, grids[i : i + 1], seeds[i : i + 1], 5)[0] for i in range(len(grids))]
    plain = beam_search(model, grids, 5, MAX_LEN)
    best5 = beam_search(model, grids, 5, MAX_LEN, 0.0, 5)
    distinct = [len({tuple(t) for t in per_image}) for per_image in batched]
    return {
        "seeded_same_alone_and_batched": batched == alone,
        "n_best_first_is_plain": all(
            p.tokens == b.tokens for p, b in zip(plain, best5, strict=True)
        ),
        "mean_distinct_of_5_samples": sum(distinct) / len(distinct),
    }


def decoders(model, batch) -> dict[str, Callable[[], object]]:
    """What is timed on one batch (B, L, D)."""
    shared, seeds = torch.Generator().manual_seed(0), list(range(len(batch)))
    return {
        "beam3": lambda: beam_search(model, batch, 3, MAX_LEN),
        "beam3_repeat_penalty": lambda: beam_search(
            model, batch, 3, MAX_LEN, repeat_penalty=REPEAT_PENALTY
        ),
        "beam5_best5": lambda: beam_search(model, batch, 5, MAX_LEN, 0.0, 5),
        "sample_shared": lambda: sample(model, batch, MAX_LEN, 1.0, shared),
        "sample_per_image": lambda: seeded(model, batch, seeds, 1),
        "sample_5_per_image": lambda: seeded(model, batch, seeds, 5),
    }


def main(argv: list[str] | None = None) -> dict:
    args = captioner_parser(__doc__, batches=[1, 8, 32], repeats=5).parse_args(argv)
    engine = captioner_engine(args.model)
    model = engine.captioner.model.eval()
    grids = engine.encode(shapes_images(max(args.batches)))[engine.encoder_key("captioner")]
    rows = []
    for b in args.batches:
        batch = grids[:b]  # (B, L, D)
        runs = decoders(model, batch)
        timings = {name: timed(run, args.repeats) for name, run in runs.items()}
        row: dict = {"B": b} | {f"{k}_img_s": b / t["median_s"] for k, t in timings.items()}
        row["per_image_generators_cost"] = (
            timings["sample_per_image"]["median_s"] / timings["sample_shared"]["median_s"]
        )
        row["repeat_penalty_cost"] = (
            timings["beam3_repeat_penalty"]["median_s"] / timings["beam3"]["median_s"]
        )
        rows.append(row | {"timings": timings})
    print(table(rows, [k for k in rows[0] if k != "timings"]))
    found = checks(model, grids[: max(args.batches)])
    print(found)
    if not (found["seeded_same_alone_and_batched"] and found["n_best_first_is_plain"]):
        raise AssertionError(f"decoding controls broke on the real model: {found}")
    cost = rows[-1]["per_image_generators_cost"]
    result = {
        "model": repo_path(args.model),
        "max_len": MAX_LEN,
        "repeat_penalty": REPEAT_PENALTY,
        "rows": rows,
        "checks": found,
        "goal": {
            "figure": f"per-image generators / one shared generator, time at B={rows[-1]['B']}",
            "target": 1.1,
            "value": cost,
            "met": cost <= 1.1,
        },
    }
    write_result(args.out, "decoding_controls", result)
    return result


if __name__ == "__main__":
    main()
