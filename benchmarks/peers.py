"""Cost per caption against what a user would pick instead, on the same images and CPU:
Hugging Face BLIP (base config) and a ViT + GPT-2 VisionEncoderDecoderModel (base configs).

    python -m benchmarks.peers [--tokens 20] [--smoke]

The peers are randomly initialised (no weights can be downloaded here); their speed does not
depend on the weights' values. Each writes exactly `--tokens` tokens (greedy); Glimpse stops
at <eos>, so its per-token cost is reported too. Writes benchmarks/results/peers.json.
"""

import argparse
import gc
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import (
    RESULTS,
    current_peak_rss_mb,
    default_captioner,
    repo_path,
    reset_peak_rss,
    shapes_images,
    table,
    timed,
    write_result,
)
from service.engine import Engine

SMOKE_VIT = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "image_size": 64,
    "patch_size": 16,
}
SMOKE_TEXT = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 100,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "sep_token_id": 2,
    "pad_token_id": 0,
}


def blip(smoke: bool) -> tuple[torch.nn.Module, int]:
    from transformers import BlipConfig, BlipForConditionalGeneration

    config = BlipConfig(text_config=SMOKE_TEXT, vision_config=SMOKE_VIT) if smoke else BlipConfig()
    return BlipForConditionalGeneration(config).eval(), config.vision_config.image_size


def vit_gpt2(smoke: bool) -> tuple[torch.nn.Module, int]:
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
    )

    vit = ViTConfig(**SMOKE_VIT) if smoke else ViTConfig()
    small = (
        {
            "n_embd": 32,
            "n_layer": 1,
            "n_head": 2,
            "vocab_size": 100,
            "bos_token_id": 1,
            "eos_token_id": 2,
        }
        if smoke
        else {}
    )
    gpt2 = GPT2Config(add_cross_attention=True, is_decoder=True, **small)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(vit, gpt2)
    config.decoder_start_token_id = gpt2.bos_token_id
    config.pad_token_id = gpt2.eos_token_id
    return VisionEncoderDecoderModel(config).eval(), vit.image_size


def peer_runner(model: torch.nn.Module, size: int, tokens: int) -> Callable:
    pixels = torch.rand(1, 3, size, size)  # (1, 3, S, S)

    def run() -> None:
        with torch.inference_mode():
            out = model.generate(
                pixel_values=pixels,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                num_beams=1,
                do_sample=False,
            )
        if out.size(1) < tokens:
            raise AssertionError(f"{type(model).__name__} wrote {out.size(1)} < {tokens} tokens")

    return run


def measure(name: str, build: Callable[[], tuple[Callable, int, int]], repeats: int) -> dict:
    """Build a model, caption one image `repeats` times; its own peak RSS and parameters."""
    gc.collect()
    reset_peak_rss()
    run, params, words = build()
    timing = timed(run, repeats)
    return {
        "model": name,
        "params_m": params / 1e6,
        "s_per_caption": timing["median_s"],
        "tokens": words,
        "ms_per_token": 1000 * timing["median_s"] / words,
        "peak_rss_mb": current_peak_rss_mb(),
        "spread": timing["spread"],
        "timing": timing,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=default_captioner(), help="captioner dir")
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny peer configs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    image = shapes_images(1)

    def glimpse(beam_size: int) -> Callable[[], tuple[Callable, int, int]]:
        def build() -> tuple[Callable, int, int]:
            engine = Engine.from_dirs(args.model, None)
            words = len(engine.caption(image, beam_size, args.tokens)[0].words)
            params = sum(p.numel() for m in engine._encoders.values() for p in m[0].parameters())
            params += sum(p.numel() for p in engine.captioner.model.parameters())
            return (lambda: engine.caption(image, beam_size, args.tokens)), params, max(words, 1)

        return build

    def peer(factory: Callable) -> Callable[[], tuple[Callable, int, int]]:
        def build() -> tuple[Callable, int, int]:
            model, size = factory(args.smoke)
            params = sum(p.numel() for p in model.parameters())
            return peer_runner(model, size, args.tokens), params, args.tokens

        return build

    rows = [
        measure("glimpse greedy (image to caption)", glimpse(1), args.repeats),
        measure("glimpse beam 3 (image to caption)", glimpse(3), args.repeats),
        measure("BLIP base (greedy)", peer(blip), args.repeats),
        measure("ViT + GPT-2 base (greedy)", peer(vit_gpt2), args.repeats),
    ]
    ours = rows[0]["s_per_caption"]
    for row in rows:
        row["x_glimpse_greedy_cost"] = row["s_per_caption"] / ours
    print(
        table(
            rows,
            [
                "model",
                "params_m",
                "s_per_caption",
                "tokens",
                "ms_per_token",
                "peak_rss_mb",
                "spread",
                "x_glimpse_greedy_cost",
            ],
        )
    )
    cheapest_peer = min(r["s_per_caption"] for r in rows[2:]) / ours
    result = {
        "model": repo_path(args.model),
        "smoke": args.smoke,
        "tokens": args.tokens,
        "threads": torch.get_num_threads(),
        "rows": rows,
        "goal": {
            "figure": "cheapest peer / glimpse greedy, s per caption",
            "target": 20.0,
            "value": cheapest_peer,
            "met": cheapest_peer >= 20.0,
        },
    }
    write_result(args.out, "peers", result)
    return result


if __name__ == "__main__":
    main()
