"""Training recipes: small JSON files in training/configs/, overridable as key=value."""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

CAPTION_ONLY = (
    "init_from",
    "alpha_c",
    "attention_supervision",
    "scheduled_sampling",
    "self_critical_samples",
)


@dataclass
class TrainConfig:
    task: str = "captions"  # "captions" or "vqa"
    # encoder
    encoder: str = "efficientnet_lite0"
    encoder_options: dict = field(default_factory=lambda: {"layers": [10]})
    image_size: int = 256
    fine_tune: bool = False  # a frozen encoder reads grids from the feature cache
    # head: fields of CaptionerConfig / VQAConfig
    model: dict = field(default_factory=dict)
    # a model directory whose head (weights, config, vocabulary) the run starts from
    init_from: str = ""
    # data
    min_word_count: int = 1
    max_caption_len: int = 24
    num_answers: int = 3000
    # optimisation
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 5.0
    alpha_c: float = 0.0  # weight of the doubly stochastic attention penalty
    # weight of the attention supervision (the shapes world: the object each phrase names)
    attention_supervision: float = 0.0
    scheduled_sampling: float = 0.0
    # captions sampled per image for self-critical training (0: teacher forcing)
    self_critical_samples: int = 0
    # evaluation, early stopping and checkpoints
    eval_beam_size: int = 1
    eval_max_images: int = 500
    patience: int = 3
    checkpoint_every: int = 500
    export_dtype: str = "float32"  # weights of the exported model: "float32" or "float16"
    # hardware
    device: str = "auto"
    amp: str = "bf16"  # on CUDA only: "bf16", "fp16" or "none"
    compile: bool = False
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.self_critical_samples and self.fine_tune:
            raise ValueError("self-critical training reads cached grids: set fine_tune=false")
        if self.task != "captions":
            defaults = TrainConfig()
            unused = [k for k in CAPTION_ONLY if getattr(self, k) != getattr(defaults, k)]
            if unused:
                raise ValueError(f"{', '.join(unused)}: settings of caption training only")

    def to_dict(self) -> dict:
        return asdict(self)


def _parse(value: str) -> object:
    """`lr=3e-4` -> 3e-4, `fine_tune=true` -> True, `encoder=resnet50` -> "resnet50"."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def load_config(
    recipe: str | Path | None = None, overrides: list[str] | None = None
) -> TrainConfig:
    """A recipe by name (`shapes-cpu`) or path, then `key=value` overrides, checked by name."""
    values: dict = {}
    if recipe is not None:
        path = Path(recipe)
        if not path.suffix:
            path = CONFIG_DIR / f"{recipe}.json"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
            raise ValueError(f"no recipe {recipe!r}: give a JSON file or one of: {known}")
        values = json.loads(path.read_text())
    names = {f.name for f in fields(TrainConfig)}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        values[key] = _parse(value)
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown config keys: {sorted(unknown)}")
    return TrainConfig(**values)
