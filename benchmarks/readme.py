"""The README's speed table (and its held-out quality table, benchmarks/quality_table.py),
written from benchmarks/results/*.json so that they cannot drift from the files: every figure
in them is read from a result file, none typed by hand.

    python -m benchmarks.readme            # rewrite the table in README.md
    python -m benchmarks.readme --check    # exit 1 (and say so) if README.md's table differs

Each result file has one formatter in `FORMATTERS` that turns it into a row (figure, goal,
met?); a file that is missing is left out of the table. A result file without a formatter is
named on stderr: add its formatter there (one function, `Row` out), and a test checks the
README against this script.
"""

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import RESULTS
from benchmarks.quality_table import END as QUALITY_END
from benchmarks.quality_table import START as QUALITY_START
from benchmarks.quality_table import quality_table

README = RESULTS.parent.parent / "README.md"
START = "<!-- speed table: written by `python -m benchmarks.readme` from benchmarks/results -->"
END = "<!-- end of speed table -->"
# Held-out quality and training methods have tables of their own (README, docs/training.md).
NOT_SPEED = frozenset({"quality", "methods"})


@dataclass(frozen=True)
class Row:
    figure: str
    goal: str = ""
    met: str = ""


def yes(met: bool) -> str:
    return "yes" if met else "no"


def whole(value: float) -> str:
    """A count or a rate, rounded, with thousands separated: 1,028."""
    return f"{value:,.0f}"


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms"


def goal_of(result: dict, unit: str = "x", bound: str = ">=") -> tuple[str, str]:
    """The (goal, met?) cells of a result file's single `goal`."""
    goal = result["goal"]
    return f"{bound} {goal['target']:g}{unit}", yes(goal["met"])


def decode(result: dict) -> Row:
    row = max(result["rows"], key=lambda r: r["B"])
    same = "same captions (asserted)" if row["same_captions"] else "captions differ"
    figure = (
        f"batched beam (K={row['K']}) vs one image at a time, B={row['B']}: "
        f"**{row['speedup']:.2f}x** ({whole(row['batched_img_s'])} vs "
        f"{whole(row['per_image_img_s'])} img/s), {same}; greedy {whole(row['greedy_img_s'])} "
        f"img/s, sampling {whole(row['sample_img_s'])} img/s"
    )
    return Row(figure, *goal_of(result))


def decoding_controls(result: dict) -> Row:
    rows = sorted(result["rows"], key=lambda r: r["B"])
    big, checks = rows[-1], result["checks"]
    others = ", ".join(f"{r['per_image_generators_cost']:.2f}x at B={r['B']}" for r in rows[:-1])
    asserted = checks["seeded_same_alone_and_batched"] and checks["n_best_first_is_plain"]
    figure = (
        f"one generator per image (what makes a seed hold in any batch) vs one for the batch, "
        f"B={big['B']}: **{big['per_image_generators_cost']:.2f}x** the time "
        f"({whole(big['sample_per_image_img_s'])} vs {whole(big['sample_shared_img_s'])} img/s;"
        f" {others}); seeded samples the same alone and in a batch, first of the 5 best = plain"
        f" beam ({'both asserted' if asserted else 'NOT both true'}); 5 best of K=5: "
        f"{whole(big['beam5_best5_img_s'])} img/s vs {whole(big['beam3_img_s'])} for plain "
        f"K=3; 5 samples per image: {whole(big['sample_5_per_image_img_s'])} img/s; K=3 ranked "
        f"with the repeat penalty (the default): {whole(big['beam3_repeat_penalty_img_s'])} "
        f"img/s, {big['repeat_penalty_cost']:.2f}x the time"
    )
    return Row(figure, *goal_of(result, bound="<="))


def encoder(result: dict) -> Row:
    def x_roofline(batch: int, variant: str) -> float:
        found = (r for r in result["rows"] if r["batch"] == batch and r["variant"] == variant)
        return next(found)["x_roofline"]

    goal = result["goal"]
    best = goal["at"]["batch"]
    batches = sorted({r["batch"] for r in result["rows"]} - {best}, reverse=True)
    others = "".join(f", {x_roofline(b, 'bn_folded'):.1f}x at batch {b}" for b in batches)
    eager = ", ".join(f"{x_roofline(b, 'fp32'):.1f}x" for b in [best, *batches])
    figure = (
        f"served variant (BatchNorm folded) vs roofline (FLOPs / measured matmul peak, "
        f"{result['matmul_peak_gflops']:.0f} GFLOP/s): **{goal['value']:.1f}x** at batch {best}"
        f"{others} (eager fp32: {eager})"
    )
    bf16 = [r["x_roofline"] for r in result["rows"] if r["variant"] == "bf16_autocast"]
    if bf16:
        figure += f"; bf16 autocast up to {max(bf16):.0f}x the roofline on this CPU"
    return Row(figure, *goal_of(result, bound="<="))


def peers(result: dict) -> Row:
    others = [r for r in result["rows"] if not r["model"].startswith("glimpse")]
    greedy = next(r for r in result["rows"] if r["model"].startswith("glimpse greedy"))
    listed = ", ".join(f"{r['model'].split(' (')[0]} {r['s_per_caption']:.2f} s" for r in others)
    params = "/".join(f"{r['params_m']:.0f}M" for r in others)
    memory = "-".join(f"{r['peak_rss_mb'] / 1024:.1f}" for r in others)
    figure = (
        f"cheapest peer vs Glimpse greedy, seconds per caption: **{result['goal']['value']:.1f}x**"
        f" ({listed}, Glimpse {greedy['s_per_caption']:.2f} s); {greedy['params_m']:.1f}M vs "
        f"{params} parameters; peak memory {greedy['peak_rss_mb'] / 1024:.1f} vs {memory} GB"
    )
    return Row(figure, *goal_of(result))


def server(result: dict) -> Row:
    rows = {r["clients"]: r for r in result["rows"]}
    parts = []
    if 1 in rows:
        maps = result["maps_one_client_alternating"]
        parts.append(
            f"1 client: p50 {ms(rows[1]['p50_s'])} against the engine's "
            f"{result['engine_one_image']['ms']:.0f} ms (alternating, with the maps "
            f"{ms(maps['p50_s_with'])}, without {ms(maps['p50_s_without'])})"
        )
    if 32 in rows:
        r = rows[32]
        parts.append(
            f"32 clients: {r['img_s']:.1f} img/s = **{r['x_offline']:.2f}x** the offline batched "
            f"rate ({result['offline']['img_s']:.1f} img/s), {r['errors']} errors, mean batch "
            f"{r['mean_batch']:.1f}"
        )
    for clients in (64, 128):
        if clients in rows:
            r = rows[clients]
            busy = f"503 `busy` in a median {ms(r['busy_p50_s'])}" if r["busy_p50_s"] else "no 503"
            parts.append(f"{clients}: **{r['x_offline']:.2f}x**, p99 {r['p99_s']:.2f} s, {busy}")
    cpu = max(r["client_cpu_share"] for r in result["rows"])
    parts.append(f"the load generator used at most {100 * cpu:.0f}% of a core")
    goal = (
        "1 client <= engine + 8 ms; 32 clients >= 0.9x, 0 errors; 64 and 128 >= 0.85x, "
        "p99 < 2 s, 503s < 50 ms"
    )
    missed = [g["figure"].split(" (")[0] for g in result["goals"] if not g["met"]]
    met = "yes" if not missed else "no: " + "; ".join(missed)
    return Row("; ".join(parts), goal, met)


def train(result: dict) -> Row:
    figure = (
        f"feature cache {result['cache_img_s']:.1f} img/s; training "
        f"{result['train_samples_s']:.0f} samples/s, {result['epoch_default_world_min']:.1f} min "
        f"per default epoch (load average {result['machine']['load_average'][0]:.1f})"
    )
    return Row(figure)


def soak(result: dict) -> Row:
    statuses = result["statuses"]
    answered = (
        "all 200"
        if set(statuses) == {"200"}
        else ", ".join(f"{n:,} {s}" for s, n in statuses.items())
    )
    models = f" against {', '.join(result['models'])}" if "models" in result else ""
    rss = result["rss_mb"]
    figure = (
        f"{result['seconds'] / 60:.0f} min at {result['clients']} clients{models}: "
        f"{result['requests']:,} requests, {answered}; RSS "
        f"{100 * result['rss_growth_after_warmup']:+.2f}% after warm-up "
        f"({whole(rss['after_warmup'])} -> {whole(rss['final'])} MB)"
    )
    return Row(figure, f"< {100 * result['max_growth']:.0f}%", yes(result["passed"]))


def labels(result: dict) -> Row:
    rows = {r["B"]: r for r in result["rows"]}
    batched, one = rows[max(rows)], rows[1]
    target = result["goal"]["target"]
    figure = (
        f"on photographs, per image, labels added to a caption's grid (rest of the network, "
        f"classifier, maps) against the default caption (beam 3): "
        f"**{100 * batched['shared_share_of_caption']:.1f}%** batched (B={batched['B']}: "
        f"{batched['labels_shared_ms']:.1f} vs {batched['caption_ms']:.1f} ms), "
        f"**{100 * one['shared_share_of_caption']:.1f}%** for one image "
        f"({one['labels_shared_ms']:.1f} vs {one['caption_ms']:.1f} ms); a `/v1/labels` request "
        f"alone (its own grid pass): {100 * one['alone_share_of_caption']:.0f}% of a caption"
    )
    met = (
        f"batched {yes(batched['shared_share_of_caption'] < target)}; "
        f"one image {yes(one['shared_share_of_caption'] < target)}"
    )
    return Row(figure, f"< {100 * target:.0f}%", met)


def domain(result: dict) -> Row:
    cost = result["cost"]
    figure = (
        f"the domain check per image: {cost['check_ms']:.2f} ms, "
        f"**{100 * cost['share_of_caption']:.1f}%** of a {cost['caption_ms']:.0f} ms caption"
    )
    return Row(figure)


def memory(result: dict) -> Row:
    phases = result["phases"]
    worst = max(phases, key=lambda p: p["peak_rss_mb"])
    settled = max(p["settled_over_idle"] for p in phases)
    p99 = max(p["normal"]["p99_s"] for p in phases)
    side = result["worst_case"]["side"]
    figure = (
        f"bursts of worst-case images ({side:,} x {side:,} px in "
        f"{result['worst_case']['bytes']['png'] // 1000} KB) and trickling uploads: peak "
        f"**{whole(worst['peak_rss_mb'])} MB** ({worst['load']}), settled within "
        f"{100 * settled:.1f}% of idle; ordinary requests meanwhile p99 {p99:.2f} s"
    )
    goals = result["goals"]
    goal = (
        f"peak < {goals['peak_rss_mb']:,} MB, settled < {100 * goals['settled_over_idle']:.0f}%, "
        f"p99 < {goals['normal_p99_s']:g} s"
    )
    return Row(figure, goal, yes(result["passed"]))


def coco_scale(result: dict) -> Row:
    reading, epoch, images = result["reading"], result["epoch"], result["images"]
    warm = reading["warm"]
    floor = reading["floor: one fp16 gather a batch"]
    figure = (
        f"COCO-size caption data ({images['train'] + images['restval']:,} training images, "
        f"{result['vocabulary']['words']:,} words): batches from the fp16 grid cache at "
        f"{whole(warm['examples_per_s'])} examples/s warm ({warm['ms_per_batch']:.0f} ms a batch;"
        f" one fp16 gather: {floor['ms_per_batch']:.0f} ms), "
        f"{epoch['seconds_per_epoch']['warm'] / 60:.0f} min an epoch before any GPU step"
    )
    return Row(figure)


def gpu_step(result: dict) -> Row:
    rows = {(r["step"], r["amp"]): r for r in result["rows"]}

    def epoch(step: str, amp: str = "bf16") -> str:
        row = rows[(step, amp)]
        return f"{row['ms_per_step']:.0f} ms a step, {row['epoch_min']:.1f} min an epoch"

    compiled = [r for r in result["rows"] if r["step"].endswith("compiled")]
    figure = (
        f"GPU compute of COCO-size training on one {result['device']}, bf16: `coco-gpu` "
        f"**{epoch('coco-gpu, 12 steps')}** (fp32 {epoch('coco-gpu, 12 steps', 'none')}"
        + (f"; compiled {compiled[0]['ms_per_step']:.0f} ms" if compiled else "")
        + f"), `coco-scst` {epoch('coco-scst, 5 samples an image')}, `vqa-coco-gpu` 448 px "
        f"{epoch('vqa-coco-gpu, 448 px')}; beam-3 validation of 5,000 images "
        f"{60 * result['validation_beam3']['validation_min']:.0f} s"
    )
    return Row(figure)


def latency(result: dict) -> Row:
    goals = {g["figure"]: g for g in result["goals"]}
    beam, greedy = (goals[f"COCO-size {d} B=1 int8, ms per caption"] for d in ("beam3", "greedy"))
    fp32 = {
        r["decoding"]: r["per_caption_ms"]
        for r in result["rows"]
        if r["head"] == "coco" and r["precision"] == "fp32" and r["B"] == 1
    }
    rss = result["serving_rss"]
    figure = (
        f"COCO-size head, image to caption, B=1, int8: beam 3 **{beam['value']:.0f} ms**, "
        f"greedy **{greedy['value']:.0f} ms** "
        f"(fp32: {fp32['beam3']:.0f} / {fp32['greedy']:.0f} ms); "
        f"serving RSS with both bundled models {rss['fp32']['rss_mb']:.0f} MB"
    )
    goal = f"beam 3 <= {beam['target']:g} ms, greedy <= {greedy['target']:g} ms"
    return Row(figure, goal, yes(beam["met"] and greedy["met"]))


# In the table's order.
FORMATTERS: dict[str, Callable[[dict], Row]] = {
    "latency": latency,
    "decode": decode,
    "decoding_controls": decoding_controls,
    "encoder": encoder,
    "peers": peers,
    "server": server,
    "train": train,
    "soak": soak,
    "labels": labels,
    "domain": domain,
    "memory": memory,
    "coco_scale": coco_scale,
    "gpu_step": gpu_step,
}


def unformatted(results: Path) -> list[str]:
    """Result files that no formatter reads (and that are not meant for this table)."""
    names = {path.stem for path in results.glob("*.json")}
    return sorted(names - set(FORMATTERS) - NOT_SPEED)


def speed_table(results: Path = RESULTS) -> str:
    """The table, between its markers, from the result files in `results` that exist."""
    lines = [START, "| benchmark | figure | goal | met? |", "|---|---|---|---|"]
    for name, formatter in FORMATTERS.items():
        path = results / f"{name}.json"
        if path.exists():
            row = formatter(json.loads(path.read_text()))
            lines.append(f"| {name} | {row.figure} | {row.goal} | {row.met} |")
    return "\n".join([*lines, END])


def with_table(readme: str, table: str, start_marker: str = START, end_marker: str = END) -> str:
    """`readme` with the text between the markers (inclusive) replaced by `table`."""
    start, end = readme.find(start_marker), readme.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"README.md lacks the table's markers {start_marker!r} ... {end_marker!r}")
    return readme[:start] + table + readme[end + len(end_marker) :]


def with_tables(readme: str, results: Path) -> str:
    """`readme` with the speed table and, where quality.json is, the quality table rewritten."""
    readme = with_table(readme, speed_table(results))
    quality = results / "quality.json"
    if not quality.is_file():
        return readme
    table = quality_table(json.loads(quality.read_text()))
    return with_table(readme, table, QUALITY_START, QUALITY_END)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    for name in unformatted(args.results):
        print(f"{name}.json has no formatter in benchmarks/readme.py", file=sys.stderr)
    current = args.readme.read_text()
    wanted = with_tables(current, args.results)
    if args.check:
        if wanted != current:
            print(f"{args.readme}: a table is out of date; run python -m benchmarks.readme")
            return 1
        return 0
    args.readme.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
