"""Image-to-caption latency: the bundled captioner and a COCO-size head, greedy and beam
search, batch 1 and 8, fp32 and int8, next to this machine's matmul peak and memory read
bandwidth and the floor they imply for a decoding step.

    python -m benchmarks.latency [--model DIR] [--batches 1 8] [--words 16]

The COCO-size head is the `coco-gpu` recipe's (d_model 512, embed 512, hidden 1,024,
attention 512) with a 10,000-word vocabulary on the bundled model's EfficientNet-Lite0 grid,
its weights random (seeded) and <eos> suppressed, so that every caption has exactly `--words`
words. The encoder and the decoding are timed apart (the encoder once per batch: both heads
read the same grid) and added. The serving RSS is a real `glimpse serve` process's with both
bundled models loaded and warmed up, fp32 and int8. Writes benchmarks/results/latency.json.
"""

import argparse
import copy
import json
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import (
    RESULTS,
    captioner_engine,
    default_captioner,
    proc_kib,
    repo_path,
    shapes_images,
    table,
    timed,
    write_result,
)
from benchmarks.encoder import matmul_peak
from benchmarks.local_server import local_server
from benchmarks.step_cost import flops_per_step, module_ms, read_bandwidth, weight_bytes_per_step
from models.captioner import Captioner, CaptionerConfig, Prepared
from models.decoding import DecodeOptions, decode_captions
from models.quantize import quantize_int8
from models.text import BOS_ID, EOS_ID
from service.settings import Settings
from training.config import load_config

# The bars for the COCO-size head, beam 3 and greedy at batch 1, ms per caption.
GOALS = {"beam": (60.0, 30.0), "greedy": (35.0, 20.0)}  # (target, aim)
PRECISIONS = ("fp32", "int8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=default_captioner(), help="captioner dir")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=20, help="most words, bundled captioner")
    parser.add_argument("--words", type=int, default=16, help="words of a COCO-size caption")
    parser.add_argument("--vocab", type=int, default=10_000, help="COCO-size vocabulary")
    parser.add_argument("--recipe", default="coco-gpu", help="recipe whose head is timed")
    parser.add_argument(
        "--head", nargs="*", default=[], metavar="KEY=VALUE", help="override the recipe's head"
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--matmul-n", type=int, default=1024)
    parser.add_argument("--bandwidth-mb", type=int, default=512)
    parser.add_argument(
        "--serve-models",
        type=Path,
        nargs=2,
        metavar=("CAPTIONER", "VQA"),
        help="the models whose serving RSS is measured (default: the bundled ones)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)
    if min(args.batches + [args.beam_size, args.max_len, args.words, args.repeats]) < 1:
        parser.error("batches, beam size, lengths and repeats must be >= 1")
    return args


def coco_head(
    recipe: str, overrides: list[str], vocab: int, grids: torch.Tensor, grid: tuple[int, int]
) -> Captioner:
    """The recipe's head over `grids`' channels, random but seeded, never writing <eos>."""
    fields = load_config(recipe).model | {k: json.loads(v) for k, v in _pairs(overrides)}
    config = CaptionerConfig(vocab_size=vocab, feat_dim=grids.size(-1), grid=grid, **fields)
    torch.manual_seed(0)
    model = Captioner(config).eval()
    with torch.no_grad():
        model.out.weight[EOS_ID] = 0.0
        model.out.bias[EOS_ID] = float("-inf")
    return model


def _pairs(overrides: list[str]) -> list[tuple[str, str]]:
    pairs = [item.partition("=")[::2] for item in overrides]
    if any(not key or not value for key, value in pairs):
        raise SystemExit(f"--head takes KEY=VALUE pairs, got {overrides}")
    return pairs


def decodings(beam_size: int) -> dict[str, int]:
    """The decodings timed, by name: their beam sizes."""
    return {"greedy": 1, f"beam{beam_size}": beam_size}


def precisions(model: Captioner) -> dict[str, Captioner]:
    """The model as loaded (fp32) and as `GLIMPSE_QUANTIZE=int8` serves it."""
    return {"fp32": model, "int8": quantize_int8(copy.deepcopy(model))}


@torch.inference_mode()
def step_figures(models: dict[str, Captioner], grid: torch.Tensor, rows: int, repeats: int) -> dict:
    """One step of each precision at batch 1 with `rows` decoder rows (the beams): bytes of
    weights read, FLOPs (counted in fp32: int8 does the same arithmetic), time, and where the
    time goes."""
    prepared = {p: m.prepare(grid[:1]).beams(rows) for p, m in models.items()}
    tokens = torch.full((rows,), BOS_ID, dtype=torch.long)
    flops = flops_per_step(models["fp32"], tokens, prepared["fp32"])
    decoding = "greedy" if rows == 1 else f"beam{rows}"
    return {
        f"{precision} {decoding}": _step(model, tokens, prepared[precision], flops, repeats)
        for precision, model in models.items()
    }


def _step(
    model: Captioner, tokens: torch.Tensor, prepared: Prepared, flops: int, repeats: int
) -> dict:
    step = timed(lambda: model.step(tokens, prepared), repeats * 5, warmup=3)
    return {
        "rows": tokens.numel(),
        "weight_bytes": weight_bytes_per_step(model, tokens, prepared),
        "flops": flops,
        "step_ms": step["median_s"] * 1e3,
        "modules_ms": {k: round(v, 4) for k, v in module_ms(model, tokens, prepared, 20).items()},
    }


def time_head(
    head: str,
    models: dict[str, Captioner],
    grids: torch.Tensor,
    encoder_ms: dict[int, float],
    args: argparse.Namespace,
    max_len: int,
) -> list[dict]:
    rows = []
    for precision, model in models.items():
        for decoding, beam in decodings(args.beam_size).items():
            options = DecodeOptions(beam_size=beam, max_len=max_len)
            for b in args.batches:
                run = partial(decode_captions, model, grids[:b], options)
                decode = timed(run, args.repeats)
                captions = run()
                decode_ms = decode["median_s"] * 1e3
                total = encoder_ms[b] + decode_ms
                rows.append(
                    {
                        "head": head,
                        "precision": precision,
                        "decoding": decoding,
                        "B": b,
                        "words": sum(len(c.tokens) for c in captions) / b,
                        "encoder_ms": encoder_ms[b],
                        "decode_ms": decode_ms,
                        "total_ms": total,
                        "per_caption_ms": total / b,
                        "decode_min_ms": decode["min_s"] * 1e3,  # the least a load allowed
                        "decode_spread": decode["spread"],
                    }
                )
    return rows


def agreement(models: dict[str, Captioner], grids: torch.Tensor, options: DecodeOptions) -> float:
    """Share of images whose int8 caption is word for word the fp32 one."""
    fp32, int8 = (decode_captions(models[p], grids, options) for p in PRECISIONS)
    return sum(a.tokens == b.tokens for a, b in zip(fp32, int8, strict=True)) / len(fp32)


def floors(
    steps: dict, rows: list[dict], bandwidth: float, peak: float, encoder_ms: float, words: int
) -> dict:
    """The least a step (bytes / bandwidth or FLOPs / peak, the larger) and a caption (the
    encoder plus `words` such steps) can cost, beside the measured step (`model.step`) and
    the measured decoding per word at batch 1 (the step plus the search's own work); weights
    that stay in the cache can beat the bandwidth floor."""
    batch_one = min(row["B"] for row in rows)
    out = {}
    for name, step in steps.items():
        precision, decoding = name.split()
        row = next(
            r
            for r in rows
            if (r["head"], r["precision"], r["decoding"], r["B"])
            == ("coco", precision, decoding, batch_one)
        )
        step_floor = max(step["weight_bytes"] / bandwidth, step["flops"] / peak) * 1e3
        out[name] = {
            "step_ms": step_floor,
            "caption_ms": encoder_ms + words * step_floor,
            "measured_step_ms": step["step_ms"],
            "measured_decode_ms_per_word": row["decode_ms"] / row["words"],
        }
    return out


def serving_rss(models: tuple[Path, Path] | None) -> dict:
    """VmRSS and peak of a real `glimpse serve` with both heads loaded and warmed up."""
    settings = Settings()
    caption_dir, vqa_dir = models or (settings.caption_model, settings.vqa_model)
    out: dict = {
        "how": "a `glimpse serve` process (benchmarks/local_server.py) after loading and "
        "warming up both heads, before any request",
        "models": [repo_path(caption_dir), repo_path(vqa_dir)],
    }
    for precision, quantize in (("fp32", "none"), ("int8", "int8")):
        served = {"caption_model": caption_dir, "vqa_model": vqa_dir, "quantize": quantize}
        with local_server(served, capture_stderr=True) as server:
            status = f"/proc/{server.pid}/status"
            out[precision] = {
                "rss_mb": (proc_kib("VmRSS", status) or 0) / 1024,
                "peak_rss_mb": (proc_kib("VmHWM", status) or 0) / 1024,
            }
    return out


def goals(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        mode = "greedy" if row["decoding"] == "greedy" else "beam"
        if row["head"] != "coco" or row["B"] != 1:
            continue
        target, aim = GOALS[mode]
        value = row["per_caption_ms"]
        out.append(
            {
                "figure": f"COCO-size {row['decoding']} B=1 {row['precision']}, ms per caption",
                "target": target,
                "aim": aim,
                "value": value,
                "met": value <= target,
            }
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = captioner_engine(args.model)
    key = engine.encoder_key("captioner")
    images = shapes_images(max(args.batches))
    with torch.inference_mode():
        grids = engine.encode(images)[key]  # (N, L, D)
    encoder_ms = {
        b: timed(lambda b=b: engine.encode(images[:b]), args.repeats)["median_s"] * 1e3
        for b in args.batches
    }
    peak = matmul_peak(args.matmul_n, args.repeats)
    bandwidth = read_bandwidth(args.bandwidth_mb, args.repeats)

    bundled = precisions(engine.captioner.model.eval())
    coco = precisions(
        coco_head(args.recipe, args.head, args.vocab, grids, engine.grids["captioner"])
    )
    rows = time_head("bundled", bundled, grids, encoder_ms, args, args.max_len)
    rows += time_head("coco", coco, grids, encoder_ms, args, args.words)
    steps = {
        **step_figures(coco, grids, 1, args.repeats),
        **step_figures(coco, grids, args.beam_size, args.repeats),
    }
    result = {
        "models": {
            "bundled": repo_path(args.model),
            "coco": {
                "recipe": args.recipe,
                "vocabulary": args.vocab,
                "words": args.words,
                "head": {**load_config(args.recipe).model, **dict(_pairs(args.head))},
                "weights": "random, seeded, <eos> suppressed",
            },
        },
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": peak / 1e9,
        "read_bandwidth_gbs": bandwidth / 1e9,
        "rows": rows,
        "coco_step": steps,
        "coco_floor": floors(
            steps, rows, bandwidth, peak, encoder_ms[min(args.batches)], args.words
        ),
        "int8_same_captions": {
            "bundled": agreement(bundled, grids, DecodeOptions(args.beam_size, args.max_len)),
            "coco": agreement(coco, grids, DecodeOptions(args.beam_size, args.words)),
        },
        "serving_rss": serving_rss(args.serve_models),
    }
    result["goals"] = goals(rows)
    columns = ["head", "precision", "decoding", "B", "words", "encoder_ms", "decode_ms"]
    print(table(rows, [*columns, "per_caption_ms"]))
    print(
        f"matmul peak {peak / 1e9:.0f} GFLOP/s, read bandwidth {bandwidth / 1e9:.1f} GB/s, "
        f"{torch.get_num_threads()} threads"
    )
    for name, floor in result["coco_floor"].items():
        print(
            f"COCO-size step {name}: {floor['measured_step_ms']:.2f} ms measured, "
            f"floor {floor['step_ms']:.2f} ms"
        )
    rss = result["serving_rss"]
    print(f"serving RSS: fp32 {rss['fp32']['rss_mb']:.0f} MB, int8 {rss['int8']['rss_mb']:.0f} MB")
    write_result(args.out, "latency", result)
    return result


if __name__ == "__main__":
    main()
