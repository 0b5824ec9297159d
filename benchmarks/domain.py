"""Does the domain check know what the model knows? The stored check of a model directory on a
fresh held-out shapes world (a seed not used in training), on that world drawn differently
(JPEG, resizes, noise, edges, a screenshot), and on foreign pictures (scikit-image's
photographs; noise, gradients, text, a desktop screenshot); its cost against a caption's.
With --compare-data, both kinds of score are also fitted there and measured the same way.

    python -m benchmarks.domain [--model DIR] [--images 500] [--compare-data DIR]

Writes benchmarks/results/domain.json.
"""

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import (
    RESULTS,
    default_captioner,
    repo_path,
    shapes_images,
    table,
    timed,
    write_result,
)
from models.checkpoint import load_pretrained
from models.domain import KINDS, DomainModel
from service.engine import Engine
from training.domain import DomainRecipe, encode_all, fit_domains
from training.domain_probes import VARIATIONS, made_pictures, skimage_photographs

HELD_OUT_SEED = 977  # the bundled models were trained on seed 0


def auroc(inside: list[float], outside: list[float]) -> float:
    """P(a foreign image scores above an in-domain one), ties counting half."""
    a, b = np.asarray(inside)[:, None], np.asarray(outside)[None, :]
    return float((a < b).mean() + 0.5 * (a == b).mean())


def probe_sets(images: int, varied: int, seed: int) -> dict[str, list[Image.Image]]:
    """The held-out world, each variation of its first `varied` images, and the foreign set."""
    world = shapes_images(images, seed=seed)
    rng = np.random.default_rng(seed)
    sets = {"held_out": world}
    sets |= {name: [v(im, rng) for im in world[:varied]] for name, v in VARIATIONS.items()}
    sets["foreign"] = list(skimage_photographs().values()) + list(made_pictures(seed).values())
    return sets


def measure(domain: DomainModel, grids: dict[str, torch.Tensor]) -> dict:
    """Share in the domain per set, the margin between the groups, and AUROC."""
    scores = {name: domain.score(g).tolist() for name, g in grids.items()}
    inside = {name: s for name, s in scores.items() if name != "foreign"}
    varied = [x for name, s in inside.items() if name != "held_out" for x in s]
    foreign = scores["foreign"]
    worst_inside = max(max(s) for s in inside.values())
    return {
        "kind": domain.kind,
        "threshold": domain.threshold,
        "held_out_in_domain": float(np.mean(np.array(inside["held_out"]) <= domain.threshold)),
        "variations_in_domain": float(np.mean(np.array(varied) <= domain.threshold)),
        "foreign_out_of_domain": float(np.mean(np.array(foreign) > domain.threshold)),
        "auroc": auroc([x for s in inside.values() for x in s], foreign),
        "max_in_domain_score": round(worst_inside, 2),
        "min_foreign_score": round(min(foreign), 2),
        "margin_ratio": round(min(foreign) / worst_inside, 3),
        "per_set": {
            name: {
                "median": round(statistics.median(s), 2),
                "max": round(max(s), 2),
                "min": round(min(s), 2),
                "in_domain": float(np.mean(np.array(s) <= domain.threshold)),
            }
            for name, s in scores.items()
        },
    }


def cost(engine: Engine, domain: DomainModel, image: Image.Image, repeats: int) -> dict:
    """Seconds of the check on one image's grid against captioning that image (beam 3)."""
    grid = engine.encode([image])[engine.encoder_key("captioner")]  # (1, L, D)
    with torch.inference_mode():
        check = timed(lambda: domain.score(grid), repeats * 20)["median_s"]
    caption = timed(lambda: engine.caption([image], beam_size=3, max_length=30), repeats)
    return {
        "check_ms": round(check * 1e3, 4),
        "caption_ms": round(caption["median_s"] * 1e3, 1),
        "share_of_caption": round(check / caption["median_s"], 5),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=default_captioner())
    parser.add_argument("--images", type=int, default=500, help="held-out shapes images")
    parser.add_argument("--varied", type=int, default=100, help="images per variation")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--compare-data", type=Path, help="training images to fit both kinds")
    parser.add_argument("--compare-images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)

    checkpoint = load_pretrained(args.model)
    if checkpoint.domain is None:
        raise SystemExit(f"{args.model} has no domain check: glimpse domain fit --model ...")
    engine = Engine(captioner=checkpoint)
    encoder, size = engine.encoder_for("captioner")
    sets = probe_sets(args.images, args.varied, args.seed)
    with torch.inference_mode():
        grids = {n: torch.cat(list(encode_all(encoder, iter(s), size))) for n, s in sets.items()}
    stored = measure(checkpoint.domain, grids)
    result = {
        "model": repo_path(args.model),
        "held_out_world": {"images": args.images, "seed": args.seed},
        "variations": sorted(VARIATIONS),
        "variation_images": args.varied,
        "foreign_images": len(sets["foreign"]),
        "stored_check": stored,
        "fitted_as": checkpoint.domain.info,
        "cost": cost(engine, checkpoint.domain, sets["held_out"][0], args.repeats),
    }
    if args.compare_data:
        paths = sorted(args.compare_data.rglob("*.png"))[: args.compare_images]
        fitted = fit_domains(encoder, size, paths, DomainRecipe(), KINDS)
        result["compared"] = {kind: measure(d, grids) for kind, d in fitted.items()}
    write_result(args.out, "domain", result)
    rows = [{"check": "stored", **stored}]
    rows += [{"check": f"fitted {k}", **m} for k, m in result.get("compared", {}).items()]
    columns = ["check", "kind", "threshold", "held_out_in_domain", "variations_in_domain"]
    print(table(rows, columns + ["foreign_out_of_domain", "auroc", "margin_ratio"]))
    print(f"cost: {result['cost']}")
    return result


if __name__ == "__main__":
    main()
