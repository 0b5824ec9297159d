"""The README's held-out quality table, per world, written from benchmarks/results/quality.json
by `python -m benchmarks.readme` beside the speed table: the first world, a second one (its
change from the first) and the second one's images re-encoded or resized (their change from
it), against the bars the bundled models aim for."""

START = "<!-- quality table: written by `python -m benchmarks.readme` from quality.json -->"
END = "<!-- end of quality table -->"
TYPES = ("how many", "is there", "relation", "what color", "what shape", "what size")
HEADER = (
    "| held-out world | captions correct | by objects: 1 / 2 / 3 / 4 | grounding | VQA | "
    f"by type: {' / '.join(TYPES)} | VQA grounding | concat baseline |"
)
BARS = (
    "| bar | >= 99% | 4 objects >= 97% | >= 95% | >= 98% | each >= 95% | >= 95% | |\n"
    "| bar, another world or its changed images | within 1.5 / 2 points | | | within 1.5 / 2"
    " points | | | |"
)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def change(value: float, reference: float | None) -> str:
    return "" if reference is None else f" ({100 * (value - reference):+.1f})"


def row(name: str, world: dict, reference: dict | None) -> str:
    captions, vqa = world["captions"], world["vqa"]["attention"]
    by_objects = " / ".join(percent(captions["by_objects"].get(str(n))) for n in range(1, 5))
    by_type = " / ".join(percent(vqa["per_question_type"].get(t)) for t in TYPES)
    concat = world["vqa"].get("concat")
    ref_captions = reference["captions"]["correct"] if reference else None
    ref_vqa = reference["vqa"]["attention"]["accuracy"] if reference else None
    cells = [
        name,
        f"**{percent(captions['correct'])}**{change(captions['correct'], ref_captions)}",
        by_objects,
        percent(captions["grounding"]),
        f"**{percent(vqa['accuracy'])}**{change(vqa['accuracy'], ref_vqa)}",
        by_type,
        percent(vqa.get("grounding")),
        percent(concat["accuracy"]) if concat else "-",
    ]
    return "| " + " | ".join(cells) + " |"


def quality_table(quality: dict) -> str:
    """The table of quality.json's worlds; each change is from the world it was made from."""
    worlds: dict[str, dict] = quality["worlds"]
    first, *others = worlds
    lines = [START, HEADER, "|" + "---|" * 8, BARS, row(first, worlds[first], None)]
    for name in others:  # "seed 2" came from the first world, "seed 2, jpeg_q70" from seed 2
        source = name.split(",")[0]
        source = first if source == name else source
        lines.append(row(f"{name} (change from {source})", worlds[name], worlds[source]))
    return "\n".join([*lines, END])
