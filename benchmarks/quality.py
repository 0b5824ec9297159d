"""Quality of the bundled models on held-out shapes worlds, generated from seeds that
training never saw: every figure on the first, the main ones on a second world and on that
world's images re-encoded as JPEG or resized (benchmarks/heldout_worlds.py).

    python -m benchmarks.quality --data data/shapes-heldout --concat runs/vqa-concat/model

Writes benchmarks/results/quality.json (every figure, with the machine and versions) and
benchmarks/results/attention_sheet.png (the paper's figure, from our captioner).
"""

import argparse
import datetime
import json
import platform
import time
from pathlib import Path
from typing import Literal

import torch

from benchmarks.heldout_worlds import CONDITIONS, changed_world, heldout_world
from drawing.overlays import contact_sheet
from service.engine import Engine
from service.loading import load_engine
from service.settings import Settings
from training.data.coco import load_caption_split
from training.data.vqa import load_vqa_split
from training.evaluate import caption_report, vqa_report
from training.predict_split import answer_split, caption_split

RESULTS = Path(__file__).resolve().parent / "results"


def captioner(model: Path, quantize: Literal["none", "int8"]) -> Engine:
    """The captioner as the service loads it, in fp32 or int8."""
    settings = Settings(caption_model=model, vqa_model=None, quantize=quantize)
    return load_engine(settings, warm_up=False)


def caption_quality(
    engine: Engine, root: Path, beam_size: int, sheet: Path | None
) -> tuple[dict, dict[int, str]]:
    """The report on the held-out split, and the captions by image id."""
    records = load_caption_split(root, "test")
    started = time.perf_counter()
    generated, attention = caption_split(engine, records, beam_size, batch_size=32)
    seconds = time.perf_counter() - started
    report = caption_report(generated, records, root, "test", attention)
    several = next((r for r in records if len(r.captions[0].split()) > 8), records[0])
    if sheet is not None:
        words_maps = attention[several.image_id]
        from PIL import Image

        with Image.open(several.path) as image:
            picture = contact_sheet(
                image.convert("RGB"), [w for w, _ in words_maps], [m for _, m in words_maps]
            )
        picture.save(sheet)
    report = {
        "beam_size": beam_size,
        "seconds": round(seconds, 1),
        **report,
        "example": {"image": several.path.name, "caption": generated[several.image_id]},
    }
    return report, generated


def int8_against_fp32(fp32: tuple[dict, dict[int, str]], int8: tuple[dict, dict[int, str]]) -> dict:
    """Points (percent) the int8 captioner gains on the fp32 one, and how many captions moved;
    the int8 option's bar is 0.5 point either way."""
    (a, a_captions), (b, b_captions) = fp32, int8
    points = {
        "correctness_points": 100 * (b["correctness"]["accuracy"] - a["correctness"]["accuracy"]),
        "grounding_points": 100 * (b["grounding"]["hit_rate"] - a["grounding"]["hit_rate"]),
    }
    changed = sum(a_captions[i] != b_captions[i] for i in a_captions)
    return {
        **points,
        "captions_changed": changed,
        "within_half_a_point": all(abs(p) <= 0.5 for p in points.values()),
    }


def vqa_quality(model: Path, root: Path) -> dict:
    engine = Engine.from_dirs(None, model)
    records = load_vqa_split(root, "test")
    answers, attention = answer_split(engine, records, batch_size=32)
    return {
        "fusion": engine.vqa.model.config.fusion,
        **vqa_report(answers, records, root, "test", attention),
    }


def main(argv: list[str] | None = None) -> dict:
    settings = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="held-out world (made if absent)")
    parser.add_argument("--images", type=int, default=1000, help="held-out images to generate")
    parser.add_argument("--seed", type=int, default=1, help="held-out seed (training used 0)")
    parser.add_argument("--captioner", type=Path, default=settings.caption_model)
    parser.add_argument("--vqa", type=Path, default=settings.vqa_model)
    parser.add_argument("--concat", type=Path, help="the concat-fusion VQA baseline, if trained")
    parser.add_argument("--second-seed", type=int, default=2, help="a second world (0: none)")
    parser.add_argument(
        "--conditions", nargs="*", choices=CONDITIONS, default=list(CONDITIONS),
        help="what the second world's images go through, each measured apart",
    )  # fmt: skip
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)

    heldout_world(args.data, args.images, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    sheet = args.out / "attention_sheet.png"
    engine = captioner(args.captioner, "none")
    fp32 = caption_quality(engine, args.data, args.beam_size, sheet)
    int8 = caption_quality(captioner(args.captioner, "int8"), args.data, args.beam_size, None)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform()},
        "torch": torch.__version__,
        "heldout": {"images": args.images, "seed": args.seed},
        "captions": fp32[0],
        "captions_int8": int8[0],
        "int8_vs_fp32": int8_against_fp32(fp32, int8),
        "vqa": {"attention": vqa_quality(args.vqa, args.data)},
    }
    if args.concat:
        result["vqa"]["concat"] = vqa_quality(args.concat, args.data)
    result["worlds"] = {f"seed {args.seed}": summary(fp32[0], result["vqa"])}
    if args.second_seed:
        second = args.data.with_name(f"{args.data.name}-seed{args.second_seed}")
        heldout_world(second, args.images, args.second_seed)
        worlds = {f"seed {args.second_seed}": second} | {
            f"seed {args.second_seed}, {c}": changed_world(second, c) for c in args.conditions
        }
        for name, root in worlds.items():
            vqa = {"attention": vqa_quality(args.vqa, root)}
            if args.concat:
                vqa["concat"] = vqa_quality(args.concat, root)
            captions, _ = caption_quality(engine, root, args.beam_size, None)
            result["worlds"][name] = summary(captions, vqa)
    (args.out / "quality.json").write_text(json.dumps(result, indent=2) + "\n")
    for name in ("captions", "captions_int8"):
        captions = result[name]
        print(
            f"{name}: correctness {captions['correctness']['accuracy']:.3f}  "
            f"complete {captions['correctness']['complete']:.3f}  "
            f"grounding {captions['grounding']['hit_rate']:.3f}  "
            f"BLEU-4 {captions['Bleu_4']:.3f}  METEOR {captions['METEOR']:.3f}  "
            f"ROUGE-L {captions['ROUGE_L']:.3f}  CIDEr {captions['CIDEr']:.3f}"
        )
    gap = result["int8_vs_fp32"]
    print(
        f"int8 - fp32: correctness {gap['correctness_points']:+.2f} points, grounding "
        f"{gap['grounding_points']:+.2f} points, {gap['captions_changed']} captions changed"
    )
    for fusion, report in result["vqa"].items():
        print(
            f"VQA ({fusion}) accuracy {report['overall']:.3f}  "
            + "  ".join(f"{k} {v:.3f}" for k, v in report["per_question_type"].items())
        )
    for name, world in result["worlds"].items():
        captions, vqa = world["captions"], world["vqa"]["attention"]
        print(
            f"{name}: captions {captions['correct']:.3f} (4 objects "
            f"{captions['by_objects'].get('4', float('nan')):.3f}), grounding "
            f"{captions['grounding']:.3f}; VQA {vqa['accuracy']:.3f}, relation "
            f"{vqa['per_question_type'].get('relation', float('nan')):.3f}"
        )
    return result


def summary(captions: dict, vqa: dict[str, dict]) -> dict:
    """The figures a world is judged by: captions correct and complete (by object count),
    their grounding and CIDEr-D; each VQA model's accuracy (by type) and grounding."""
    correctness = captions["correctness"]
    return {
        "images": captions["num_images"],
        "captions": {
            "correct": correctness["accuracy"],
            "by_objects": {
                str(n): row["accuracy"] for n, row in correctness["by_num_objects"].items()
            },
            "grounding": captions["grounding"]["hit_rate"],
            "CIDEr": captions["CIDEr"],
        },
        "vqa": {fusion: vqa_summary(report) for fusion, report in vqa.items()},
    }


def vqa_summary(report: dict) -> dict:
    """A VQA report's accuracy (overall and by question type) and glimpse grounding."""
    return {
        "accuracy": report["overall"],
        "per_question_type": report["per_question_type"],
        "grounding": report["grounding"]["hit_rate"] if "grounding" in report else None,
    }


if __name__ == "__main__":
    main()
