"""Encoder speed: the EfficientNet-Lite0 grid at batch 1 and 16, fp32 and channels-last (and
bf16 autocast), against the roofline bound FLOPs / measured matmul peak of this machine.

    python -m benchmarks.encoder [--batches 1 16] [--image-size 256]

Writes benchmarks/results/encoder.json.
"""

import argparse
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import RESULTS, table, timed, write_result
from models.encoder import create_encoder


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
    encoder = create_encoder(args.encoder, pretrained=False, **options).eval()
    peak = matmul_peak(args.matmul_n, args.repeats)
    rows = []
    for b in args.batches:
        images = torch.rand(b, 3, args.image_size, args.image_size)  # (B, 3, S, S)
        flops = count_flops(encoder, images)
        bound = flops / peak
        with torch.inference_mode():
            reference = encoder(images)[0]  # (B, L, D)
        variants = {
            "fp32": (encoder, images, False),
            "channels_last": (
                encoder.to(memory_format=torch.channels_last),
                images.contiguous(memory_format=torch.channels_last),
                False,
            ),
            "bf16_autocast": (encoder, images, True),
        }
        for name, (net, x, bf16) in variants.items():

            def run(net=net, x=x, bf16=bf16) -> torch.Tensor:
                with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                    return net(x)[0]

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
        encoder = encoder.to(memory_format=torch.contiguous_format)
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
    best = min(rows, key=lambda r: r["x_roofline"])
    result = {
        "encoder": args.encoder,
        "layers": args.layers,
        "image_size": args.image_size,
        "matmul_peak_gflops": peak / 1e9,
        "rows": rows,
        "goal": {
            "figure": "best time / roofline bound",
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
