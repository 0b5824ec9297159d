"""Encoder speed: the EfficientNet-Lite0 grid at batch 1 and 16 against the roofline bound
FLOPs / measured matmul peak of this machine. Variants: eager fp32, BatchNorm folded into the
convolutions (what the service runs), bf16 autocast, each in CPU chunks as the service runs
them (`encode_in_chunks`); and the folded encoder in one pass, the baseline of the chunking.

    python -m benchmarks.encoder [--batches 1 16] [--image-size 256]

Writes benchmarks/results/encoder.json.
"""

import argparse
import copy
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import RESULTS, table, timed, write_result
from models.encoders import create_encoder, encode_in_chunks

SERVED = "bn_folded"  # the variant the engine runs, which the goal is judged on
ONE_PASS = "bn_folded_one_pass"  # the served encoder without the CPU chunking


def matmul_peak(n: int, repeats: int) -> float:
    """FLOP/s of an (n x n) @ (n x n) fp32 matmul: what this CPU can do at best."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / timed(lambda: a @ b, repeats)["median_s"]


def count_flops(encoder: torch.nn.Module, images: torch.Tensor) -> int:
    """FLOPs of one forward pass (a multiply-add counts 2), from PyTorch's own counter."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        encoder(images)
    return counter.get_total_flops()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="efficientnet_lite0")
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 10])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--matmul-n", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)

    options = {"layers": args.layers} if args.encoder == "efficientnet_lite0" else {}
    encoder = create_encoder(args.encoder, pretrained=False, **options).freeze()
    folded = copy.deepcopy(encoder).fold_batchnorm()
    peak = matmul_peak(args.matmul_n, args.repeats)
    rows = []
    for b in args.batches:
        images = torch.rand(b, 3, args.image_size, args.image_size)  # (B, 3, S, S)
        flops = count_flops(encoder, images)
        bound = flops / peak
        with torch.inference_mode():
            reference = encoder(images)[0]  # (B, L, D)
        variants: dict[str, tuple[Callable, bool]] = {
            "fp32": (lambda x: encode_in_chunks(encoder, x)[0], False),
            SERVED: (lambda x: encode_in_chunks(folded, x)[0], False),
            ONE_PASS: (lambda x: folded(x)[0], False),
            "bf16_autocast": (lambda x: encode_in_chunks(encoder, x)[0], True),
        }
        for name, (net, bf16) in variants.items():

            def run(net=net, x=images, bf16=bf16) -> torch.Tensor:
                with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                    return net(x)

            timing = timed(run, args.repeats)
            error = (run().float() - reference).abs().max().item()
            rows.append(
                {
                    "batch": b,
                    "variant": name,
                    "img_s": b / timing["median_s"],
                    "ms_per_img": 1000 * timing["median_s"] / b,
                    "gflops": flops / 1e9,
                    "x_roofline": timing["median_s"] / bound,
                    "spread": timing["spread"],
                    "max_abs_diff": error,
                    "timing": timing,
                }
            )
    print(f"matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(
        table(
            rows,
            [
                "batch",
                "variant",
                "img_s",
                "ms_per_img",
                "gflops",
                "x_roofline",
                "spread",
                "max_abs_diff",
            ],
        )
    )
    best = min((r for r in rows if r["variant"] == SERVED), key=lambda r: r["x_roofline"])
    result = {
        "encoder": args.encoder,
        "layers": args.layers,
        "image_size": args.image_size,
        "matmul_peak_gflops": peak / 1e9,
        "rows": rows,
        "goal": {
            "figure": f"best time of the served variant ({SERVED}) / roofline bound",
            "target": 4.0,
            "value": best["x_roofline"],
            "met": best["x_roofline"] <= 4.0,
            "at": {"batch": best["batch"], "variant": best["variant"]},
        },
    }
    write_result(args.out, "encoder", result)
    return result


if __name__ == "__main__":
    main()
