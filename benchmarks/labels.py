"""What labels cost next to a caption: the encoder's ImageNet head and its class-activation
maps, computed on from the grid a caption already needs, against the caption itself.

    python -m benchmarks.labels [--batches 1 8] [--top-k 5]

Writes benchmarks/results/labels.json. Figures per image, on photographs (what labels are
for): `caption` is the service's default caption (encoder pass, beam 3, up to 30 words, the
domain check); `labels_shared` is what labels add to a request whose grid is already there
(the rest of the network after the grid, the classifier and the maps); `labels_alone` is a
`/v1/labels` request on its own (the grid's pass and the same). Aim: shared < 10% of a caption.
"""

import statistics
import time
from collections.abc import Callable
from itertools import cycle, islice

from PIL import Image

from benchmarks.common import captioner_engine, captioner_parser, repo_path, table, write_result
from service.engine import Engine

AIM = 0.10  # labels added to a caption, as a share of the caption's own cost


def photographs(count: int) -> list[Image.Image]:
    """scikit-image's photographs, repeated to `count`: a cat, coffee, a motorcycle, a rocket."""
    from skimage import data

    photos = [data.chelsea(), data.coffee(), data.stereo_motorcycle()[0], data.rocket()]
    return [Image.fromarray(p) for p in islice(cycle(photos), count)]


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict]:
    """Seconds per call of each run, taken in turns (a run of each, `repeats` times), so that
    the load of this shared machine changes hits all of them alike; median, min and max."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats + 1):  # the first round warms up
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            if repeat:
                seconds[name].append(time.perf_counter() - started)
    return {
        name: {"median_s": statistics.median(s), "min_s": min(s), "max_s": max(s)}
        for name, s in seconds.items()
    }


def measure(engine: Engine, batch: int, top_k: int, repeats: int) -> dict:
    images = photographs(batch)
    features = engine.encode(images)
    runs = {
        "caption": lambda: engine.caption(images, 3, 30),
        "encode": lambda: engine.encode(images),
        "labels_shared": lambda: engine.labels(images, top_k, features),
        "labels_alone": lambda: engine.labels(images, top_k),
    }
    timings = interleaved(runs, repeats)
    ms = {name: 1e3 * t["median_s"] / batch for name, t in timings.items()}
    fastest = {name: t["min_s"] for name, t in timings.items()}  # the least disturbed runs
    return {
        "B": batch,
        **{f"{name}_ms": value for name, value in ms.items()},
        "shared_share_of_caption": ms["labels_shared"] / ms["caption"],
        "shared_share_of_caption_min": fastest["labels_shared"] / fastest["caption"],
        "alone_share_of_caption": ms["labels_alone"] / ms["caption"],
        "mean_caption_words": sum(len(c.words) for c in engine.caption(images, 3, 30)) / batch,
        "timings": timings,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = captioner_parser(__doc__, batches=[1, 8], repeats=15)
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args(argv)

    engine = captioner_engine(args.model)
    if engine.labeller is None:
        raise SystemExit(f"{args.model}: its encoder has no ImageNet head")
    rows = [measure(engine, b, args.top_k, args.repeats) for b in args.batches]
    columns = ["B", "caption_ms", "encode_ms", "labels_shared_ms", "labels_alone_ms"]
    shares = ["shared_share_of_caption", "shared_share_of_caption_min", "alone_share_of_caption"]
    print(table(rows, [*columns, *shares, "mean_caption_words"]))
    worst = max(row["shared_share_of_caption"] for row in rows)
    example = engine.labels(photographs(2), args.top_k)
    result = {
        "model": repo_path(args.model),
        "labeller": engine.labeller.model_id,
        "top_k": args.top_k,
        "rows": rows,
        "goal": {
            "figure": "labels added to a caption, as a share of the caption (worst batch)",
            "target": AIM,
            "value": worst,
            "met": worst < AIM,
        },
        "example": {name: r.labels[:3] for name, r in zip(["cat", "coffee"], example, strict=True)},
    }
    write_result(args.out, "labels", result)
    return result


if __name__ == "__main__":
    main()
