"""Training methods compared on the shapes world, each run judged on a fresh held-out world:
self-critical rewards from one teacher-forced captioner; recurrent cells, hard attention
against soft and located or supervised VQA glimpses against plain ones at an equal time budget.

    python -m benchmarks.methods --init runs/captions-tf/model              # every experiment
    python -m benchmarks.methods --init runs/captions-tf/model --only scst-cider reward-speed

Each experiment trains through the training package as `glimpse train` does (recipe plus
overrides, `build_task`, `fit`) into RUNS/NAME, then scores RUNS/NAME/model on the held-out
world: correctness, grounding and CIDEr-D for captioners, VQA accuracy for VQA models.
`reward-speed` times the CIDEr-D reward of 5 x batch samples against the step's forward and
backward. Results merge into benchmarks/results/methods.json, so experiments can be run one
at a time; run them alone on the machine (`flock /tmp/glimpse-heavy.lock ...`).
"""

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, machine, repo_path, table, timed, write_json
from benchmarks.heldout_worlds import heldout_world
from benchmarks.quality import caption_quality, vqa_quality, vqa_summary
from models.text import words
from service.engine import Engine
from training.captions_self_critical import SelfCriticalTask
from training.config import TrainConfig, load_config, parse_override
from training.data.coco import load_caption_split
from training.data.synthetic_coco import generate_synthetic_coco
from training.loop import fit
from training.rewards import build_reward
from training.self_critical import mean_of_others, sample_with_grad, self_critical_loss
from training.tasks import build_task

SCST = "self-critical rewards, from one teacher-forced captioner"
CAPTIONER_CELLS = "captioner cells, equal time budget"
QUESTION_CELLS = "question encoder cells, equal time budget"
GLIMPSES = "located or supervised glimpses, at the question cells' budget (plain: question-lstm)"
ATTENTION = "attention variants, at the captioner cells' budget (soft: captioner-lstm-1)"


@dataclass(frozen=True)
class Experiment:
    group: str
    recipe: str
    settings: dict = field(default_factory=dict)  # recipe fields; `model` merges into the recipe's

    @property
    def from_init(self) -> bool:
        return self.group == SCST


# The captioner rows were measured with the paper's attention, before the recipe's query read
# the word just written and the summed past alphas (attention-word-query, attention-coverage:
# those changes at the same budget).
PAPER_ATTENTION = {"word_query": False, "coverage": False}

EXPERIMENTS = {
    "scst-truth": Experiment(SCST, "shapes-scst", {"reward": {"truth": 1.0}}),
    "scst-cider": Experiment(SCST, "shapes-scst", {"reward": {"cider_d": 1.0}}),
    "scst-mix": Experiment(SCST, "shapes-scst", {"reward": {"cider_d": 0.5, "truth": 0.5}}),
    **{
        f"captioner-{cell}-{layers}": Experiment(
            CAPTIONER_CELLS,
            "shapes-cpu",
            {"model": {"cell": cell, "num_layers": layers, **PAPER_ATTENTION}},
        )
        for cell in ("lstm", "gru")
        for layers in (1, 2)
    },
    # the soft model trained the same way is captioner-lstm-1
    **{
        f"attention-hard{suffix}": Experiment(
            ATTENTION, "shapes-cpu", {"model": {"attention": "hard", **PAPER_ATTENTION}, **fields}
        )
        for suffix, fields in (
            ("", {}),  # hard_reinforce 0.1: the locations learn mostly by backpropagation
            ("-reinforce-1", {"hard_reinforce": 1.0}),
            ("-sampled", {"hard_reinforce": 1.0, "hard_expected_context": 0.0}),  # no expected
        )
    },
    "attention-word-query": Experiment(
        ATTENTION, "shapes-cpu", {"model": {"word_query": True, "coverage": False}}
    ),
    "attention-coverage": Experiment(
        ATTENTION, "shapes-cpu", {"model": {"word_query": True, "coverage": True}}
    ),
    **{
        f"question-{cell}": Experiment(
            QUESTION_CELLS, "vqa-shapes", {"model": {"question_cell": cell}}
        )
        for cell in ("lstm", "gru")
    },
    "vqa-glimpse-centres": Experiment(GLIMPSES, "vqa-shapes", {"model": {"glimpse_centres": True}}),
    "vqa-glimpse-supervised": Experiment(GLIMPSES, "vqa-shapes", {"glimpse_supervision": 1.0}),
    "vqa-glimpse-supervised-centres": Experiment(
        GLIMPSES, "vqa-shapes", {"model": {"glimpse_centres": True}, "glimpse_supervision": 1.0}
    ),
    "vqa-glimpse-relation": Experiment(
        GLIMPSES,
        "vqa-shapes",
        {"model": {"glimpse_centres": True, "relation_dim": 64}, "glimpse_supervision": 1.0},
    ),
}
REWARD_SPEED = "reward-speed"
NAMES = [*EXPERIMENTS, REWARD_SPEED]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=NAMES, default=NAMES, metavar="NAME")
    parser.add_argument("--data", type=Path, default=Path("data/shapes"), help="training world")
    parser.add_argument("--heldout", type=Path, default=Path("data/shapes-heldout"))
    parser.add_argument("--heldout-images", type=int, default=1000)
    parser.add_argument("--heldout-seed", type=int, default=1, help="training used 0")
    parser.add_argument("--init", type=Path, help="teacher-forced captioner the scst-* start from")
    parser.add_argument("--runs", type=Path, default=Path("runs/methods"), help="RUNS/NAME")
    parser.add_argument("--scst-epochs", type=int, default=2, help="epochs of every scst-* run")
    parser.add_argument("--minutes", type=float, default=20.0, help="budget of each cell run")
    parser.add_argument("--cell-epochs", type=int, default=3, help="captioner-*/attention-* epochs")
    parser.add_argument("--question-epochs", type=int, default=5, help="question-* epochs")
    parser.add_argument("--beam-size", type=int, default=3, help="held-out decoding")
    parser.add_argument("--speed-batches", type=int, default=5, help="reward-speed repeats")
    parser.add_argument("--coco-images", type=int, default=5000, help="reward-speed on COCO text")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where methods.json goes")
    args = parser.parse_args(argv)
    try:
        args.set = [parse_override(item) for item in args.set]
    except ValueError as error:
        parser.error(f"--set: {error}")
    wants_init = any(n == REWARD_SPEED or EXPERIMENTS[n].from_init for n in args.only)
    if wants_init and args.init is None:
        parser.error("the scst-* experiments and reward-speed start from --init MODEL_DIR")
    return args


def settings(name: str, args: argparse.Namespace) -> dict:
    """The recipe fields experiment `name` sets: its own, the run length of its group and
    the command line's `--set`; `model` dicts merge into the recipe's."""
    experiment = EXPERIMENTS[name]
    values: dict[str, Any] = dict(args.set)
    if experiment.from_init:
        values |= {"init_from": str(args.init), "epochs": args.scst_epochs}
    else:  # an equal budget: early stopping off, the schedule sized to about the budget
        captioner = experiment.group in (CAPTIONER_CELLS, ATTENTION)
        epochs = args.cell_epochs if captioner else args.question_epochs
        values |= {"max_minutes": args.minutes, "epochs": epochs, "patience": epochs}
    model = {**values.get("model", {}), **experiment.settings.get("model", {})}
    values |= experiment.settings
    if model:
        values["model"] = {**load_config(experiment.recipe).model, **model}
    return values


def config_of(name: str, args: argparse.Namespace) -> TrainConfig:
    return load_config(EXPERIMENTS[name].recipe, as_overrides(settings(name, args)))


def as_overrides(values: dict) -> list[str]:
    """Recipe fields as the `key=value` overrides `load_config` reads."""
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def run_experiment(name: str, args: argparse.Namespace) -> dict:
    """Train experiment `name` as `glimpse train` would, then judge it on the held-out world."""
    experiment = EXPERIMENTS[name]
    cfg = config_of(name, args)
    out = args.runs / name
    torch.manual_seed(cfg.seed)  # the head's initial weights
    task = build_task(cfg, args.data)
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit(task, cfg, out)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    recorded = settings(name, args)
    if "init_from" in recorded:
        recorded["init_from"] = repo_path(args.init)
    heldout = (
        vqa_heldout(out / "model", args.heldout)
        if cfg.task == "vqa"
        else caption_heldout(out / "model", args.heldout, args.beam_size)
    )
    return {
        "group": experiment.group,
        "recipe": experiment.recipe,
        "settings": recorded,
        "model": repo_path(out / "model"),
        "wall_minutes": round(wall / 60, 2),
        "cpu_minutes": round(cpu / 60, 2),
        "epochs_trained": result.history[-1]["epoch"] if result.history else 0,
        "ended_by": "budget"
        if result.out_of_time
        else "early stop"
        if result.stopped_early
        else "epochs",
        "validation": result.best_metrics,
        "heldout": heldout,
        "machine": machine(),
    }


def caption_heldout(model: Path, root: Path, beam_size: int) -> dict:
    """Correctness, grounding and the caption metrics (CIDEr is CIDEr-D) on the held-out world."""
    report, _ = caption_quality(Engine.from_dirs(model, None), root, beam_size, None)
    correctness = report.pop("correctness")
    return {
        "correct": correctness["accuracy"],
        "complete": correctness["complete"],
        "correct_by_objects": {
            str(n): row["accuracy"] for n, row in correctness["by_num_objects"].items()
        },
        "grounding": report.pop("grounding")["hit_rate"],
        **report,
    }


def vqa_heldout(model: Path, root: Path) -> dict:
    return vqa_summary(vqa_quality(model, root))


def reward_speed(args: argparse.Namespace) -> dict:
    """Milliseconds to score 5 x batch sampled captions with CIDEr-D against the forward
    (sampling) and backward of the same step, on the `shapes-scst-cider` recipe."""
    overrides = as_overrides({**dict(args.set), "init_from": str(args.init)})
    cfg = load_config("shapes-scst-cider", overrides)
    torch.manual_seed(cfg.seed)
    task = SelfCriticalTask(cfg, args.data)
    head, cpu, n = task.head.train(), torch.device("cpu"), cfg.self_critical_samples
    scoring, forward_backward = [], []
    for batch in task.batches(0)[: args.speed_batches]:
        records = [task.train_set.records[i] for i in batch]
        ids = [r.image_id for r in records]
        grids = task.train_set.source.many(ids, [r.path for r in records])
        started = time.perf_counter()
        samples = sample_with_grad(head, grids, n, cfg.max_caption_len)
        sampled = time.perf_counter()
        rewards = task.rewards([i for i in ids for _ in range(n)], samples.tokens.tolist(), cpu)
        scored = time.perf_counter()
        rewards = rewards.view(-1, n)
        self_critical_loss(
            samples.log_probs, samples.mask, rewards, mean_of_others(rewards)
        ).backward()
        head.zero_grad(set_to_none=True)
        forward_backward.append((sampled - started) + (time.perf_counter() - scored))
        scoring.append(scored - sampled)
    score_ms = statistics.median(scoring) * 1000
    step_ms = statistics.median(forward_backward) * 1000
    return {
        "recipe": "shapes-scst-cider",
        "captions_scored": cfg.batch_size * n,
        "batches": len(scoring),
        "scoring_ms": round(score_ms, 2),
        "forward_backward_ms": round(step_ms, 2),
        "scoring_share_of_step": round(score_ms / step_ms, 4),
        "coco_length": coco_scoring(args.coco_images, args.speed_batches),
        "machine": machine(),
    }


def coco_scoring(images: int, repeats: int) -> dict:
    """Milliseconds to score a `coco-scst` step's sampled captions (batch x samples) at COCO's
    length (the synthetic COCO's made-up words: ~10.6 a caption, 5 references an image),
    with document frequencies of `images` training images: what the reward costs where a
    GPU makes the rest of the step fast."""
    recipe = load_config("coco-scst")
    batch_size, n = recipe.batch_size, recipe.self_critical_samples
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_synthetic_coco(root, images, 0, 0, images=False, seed=0)
        train = load_caption_split(root, "train")
        reward = build_reward({"cider_d": 1.0}, root, train)
    rows = [k % len(train) for k in range(batch_size) for _ in range(n)]
    ids = [train[row].image_id for row in rows]
    # the candidates: captions of other images, as long as COCO's
    captions = [words(train[(row + 1) % len(train)].captions[k % 5]) for k, row in enumerate(rows)]
    timing = timed(lambda: reward(ids, captions), repeats)
    return {
        "training_images": images,
        "captions_scored": len(ids),
        "scoring_ms": round(timing["median_s"] * 1000, 2),
    }


def merged(path: Path, update: dict) -> dict:
    """The results already at `path` with `update`'s experiments (and reward speed) replacing
    theirs: experiments run one at a time build up one file."""
    document = json.loads(path.read_text()) if path.is_file() else {}
    experiments = {**document.get("experiments", {}), **update["experiments"]}
    return {**document, **update, "experiments": experiments}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    update: dict = {"data": repo_path(args.data), "experiments": {}}
    if args.init is not None:
        update["init"] = repo_path(args.init)
    if set(args.only) & set(EXPERIMENTS):
        heldout_world(args.heldout, args.heldout_images, args.heldout_seed)
        update["heldout"] = {
            "data": repo_path(args.heldout),
            "images": args.heldout_images,
            "seed": args.heldout_seed,
        }
    for name in args.only:
        if name == REWARD_SPEED:
            update["reward_speed"] = reward_speed(args)
        else:
            update["experiments"][name] = run_experiment(name, args)
    path = args.out / "methods.json"
    document = merged(path, update)
    write_json(path, document)
    rows = [{"experiment": name, **summary(run)} for name, run in document["experiments"].items()]
    if rows:
        print(
            table(
                rows, ["experiment", "minutes", "correct", "complete", "grounding", "CIDEr", "vqa"]
            )
        )
    if "reward_speed" in update:
        speed = update["reward_speed"]
        print(
            f"CIDEr-D of {speed['captions_scored']} captions: {speed['scoring_ms']} ms;"
            f" the step's forward and backward: {speed['forward_backward_ms']} ms"
        )
    return document


def summary(run: dict) -> dict:
    heldout = run["heldout"]
    return {
        "minutes": run["wall_minutes"],
        "correct": heldout.get("correct", ""),
        "complete": heldout.get("complete", ""),
        "grounding": heldout.get("grounding", ""),
        "CIDEr": heldout.get("CIDEr", ""),
        "vqa": heldout.get("accuracy", ""),
    }


if __name__ == "__main__":
    main()
