"""Quality of the bundled models on a held-out shapes world, generated from a seed that
training never saw.

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

import torch

from drawing.overlays import contact_sheet
from service.engine import Engine
from service.settings import Settings
from training.data.coco import load_caption_split
from training.data.shapes import generate
from training.data.vqa import load_vqa_split
from training.evaluate import caption_report, vqa_report
from training.predict_split import answer_split, caption_split

RESULTS = Path(__file__).resolve().parent / "results"


def heldout_world(root: Path, images: int, seed: int) -> None:
    if not (root / "annotations" / "captions_test.json").is_file():
        generate(root, {"train": 0, "val": 0, "test": images}, seed=seed)


def caption_quality(model: Path, root: Path, beam_size: int, sheet: Path) -> dict:
    engine = Engine.from_dirs(model, None)
    records = load_caption_split(root, "test")
    started = time.perf_counter()
    generated, attention = caption_split(engine, records, beam_size, batch_size=32)
    seconds = time.perf_counter() - started
    report = caption_report(generated, records, root, "test", attention)
    several = next((r for r in records if len(r.captions[0].split()) > 8), records[0])
    words_maps = attention[several.image_id]
    from PIL import Image

    with Image.open(several.path) as image:
        picture = contact_sheet(
            image.convert("RGB"), [w for w, _ in words_maps], [m for _, m in words_maps]
        )
    picture.save(sheet)
    return {
        "beam_size": beam_size,
        "seconds": round(seconds, 1),
        **report,
        "example": {"image": several.path.name, "caption": generated[several.image_id]},
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
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)

    heldout_world(args.data, args.images, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform()},
        "torch": torch.__version__,
        "heldout": {"images": args.images, "seed": args.seed},
        "captions": caption_quality(
            args.captioner, args.data, args.beam_size, args.out / "attention_sheet.png"
        ),
        "vqa": {"attention": vqa_quality(args.vqa, args.data)},
    }
    if args.concat:
        result["vqa"]["concat"] = vqa_quality(args.concat, args.data)
    (args.out / "quality.json").write_text(json.dumps(result, indent=2) + "\n")
    captions = result["captions"]
    print(
        f"caption correctness {captions['correctness']['accuracy']:.3f}  "
        f"complete {captions['correctness']['complete']:.3f}  "
        f"grounding {captions['grounding']['hit_rate']:.3f}  "
        f"BLEU-4 {captions['Bleu_4']:.3f}  METEOR {captions['METEOR']:.3f}  "
        f"ROUGE-L {captions['ROUGE_L']:.3f}  CIDEr {captions['CIDEr']:.3f}"
    )
    for fusion, report in result["vqa"].items():
        print(
            f"VQA ({fusion}) accuracy {report['overall']:.3f}  "
            + "  ".join(f"{k} {v:.3f}" for k, v in report["per_question_type"].items())
        )
    return result


if __name__ == "__main__":
    main()
