"""Decoding speed: batched beam search (B images x K beams as one batch) against beam search
one image at a time, on the same model and the same encoder grids; plus greedy and sampling.

    python -m benchmarks.decode [--model DIR] [--batches 1 8 32]

Writes benchmarks/results/decode.json. The captions of both beam paths must be identical.
"""

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
from models.decoding import beam_search, greedy, sample


def one_at_a_time(model, grids, beam_size: int, max_len: int) -> list:
    """The common implementation: a beam search per image."""
    return [beam_search(model, grids[i : i + 1], beam_size, max_len)[0] for i in range(len(grids))]


def main(argv: list[str] | None = None) -> dict:
    parser = captioner_parser(__doc__, batches=[1, 8, 32], repeats=5)
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=20)
    args = parser.parse_args(argv)

    engine = captioner_engine(args.model)
    model = engine.captioner.model.eval()
    key = engine.encoder_key("captioner")
    images = shapes_images(max(args.batches))
    grids = engine.encode(images)[key]  # (N, L, D)
    rows = []
    for b in args.batches:
        batch = grids[:b]
        batched = beam_search(model, batch, args.beam_size, args.max_len)
        single = one_at_a_time(model, batch, args.beam_size, args.max_len)
        same = [x.tokens == y.tokens for x, y in zip(batched, single, strict=True)]
        if not all(same):
            raise AssertionError(f"batched and per-image beam search differ at B={b}: {same}")
        # Side by side, interleaved repeats, so load changes hit both alike.
        one = timed(
            lambda batch=batch: one_at_a_time(model, batch, args.beam_size, args.max_len),
            args.repeats,
        )
        many = timed(
            lambda batch=batch: beam_search(model, batch, args.beam_size, args.max_len),
            args.repeats,
        )
        greedy_t = timed(lambda batch=batch: greedy(model, batch, args.max_len), args.repeats)
        gen = torch.Generator().manual_seed(0)
        sample_t = timed(
            lambda batch=batch, gen=gen: sample(model, batch, args.max_len, 1.0, gen), args.repeats
        )
        rows.append(
            {
                "B": b,
                "K": args.beam_size,
                "per_image_img_s": b / one["median_s"],
                "batched_img_s": b / many["median_s"],
                "speedup": one["median_s"] / many["median_s"],
                "greedy_img_s": b / greedy_t["median_s"],
                "sample_img_s": b / sample_t["median_s"],
                "mean_words": sum(len(c.tokens) for c in batched) / b,
                "same_captions": True,
                "timings": {
                    "per_image": one,
                    "batched": many,
                    "greedy": greedy_t,
                    "sample": sample_t,
                },
            }
        )
    columns = [
        "B",
        "K",
        "per_image_img_s",
        "batched_img_s",
        "speedup",
        "greedy_img_s",
        "sample_img_s",
        "mean_words",
    ]
    print(table(rows, columns))
    at_max = rows[-1]
    result = {
        "model": repo_path(args.model),
        "max_len": args.max_len,
        "rows": rows,
        "goal": {
            "figure": f"speedup at B={at_max['B']}",
            "target": 5.0,
            "value": at_max["speedup"],
            "met": at_max["speedup"] >= 5.0,
        },
        "example": engine.caption(images[:1], args.beam_size, args.max_len)[0].caption,
    }
    write_result(args.out, "decode", result)
    return result


if __name__ == "__main__":
    main()
