"""Training recipes: small JSON files in training/configs/, overridable as key=value."""

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

HARD_ATTENTION = ("hard_reinforce", "hard_entropy", "hard_baseline_decay", "hard_expected_context")
CAPTION_ONLY = (
    "init_from",
    "alpha_c",
    "attention_supervision",
    "scheduled_sampling",
    "scheduled_sampling_start",
    "scheduled_sampling_every",
    "scheduled_sampling_step",
    "self_critical_samples",
    "informative_share",
    *HARD_ATTENTION,
)
SAMPLING_RAMP = ("scheduled_sampling_start", "scheduled_sampling_every", "scheduled_sampling_step")
REWARDS = ("cider_d", "bleu4", "truth")  # what self-critical training can reward
BASELINES = ("mean", "greedy")
DEFAULT_REWARD = {"truth": 1.0}  # the shapes world's check, as before rewards could be mixed


@dataclass
class TrainConfig:
    task: str = "captions"  # "captions" or "vqa"
    # encoder
    encoder: str = "efficientnet_lite0"
    encoder_options: dict = field(default_factory=lambda: {"layers": [10]})
    image_size: int = 256
    fine_tune: bool = False  # a frozen encoder reads grids from the feature cache
    # augmented views of each training image cached beside it (JPEG, resizing, blur, noise;
    # training/augment.py), one of them drawn per example: robustness to how images are sent
    augmented_views: int = 0
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
    # a time budget: training ends after the step that passes it, then evaluates and exports
    # as at the last epoch (0: no budget)
    max_minutes: float = 0.0
    alpha_c: float = 0.0  # weight of the doubly stochastic attention penalty
    # weight of the attention supervision (the shapes world: the object each phrase names)
    attention_supervision: float = 0.0
    # VQA: weight of the glimpse supervision (the shapes world: glimpse g on the g-th object
    # the question names, for questions naming no more objects than there are glimpses)
    glimpse_supervision: float = 0.0
    # scheduled sampling: the most probability of feeding the model its own previous word,
    # reached from epoch `start` in rises of `step` every `every` epochs (the default step
    # gives the whole rate at once: a fixed rate); training/scheduled_sampling.py
    scheduled_sampling: float = 0.0
    scheduled_sampling_start: int = 0
    scheduled_sampling_every: int = 1
    scheduled_sampling_step: float = 1.0
    # captions sampled per image for self-critical training (0: teacher forcing)
    self_critical_samples: int = 0
    # its reward, a weighted mix (training/rewards.py), and each sample's baseline: the "mean"
    # reward of the image's other samples, or that of its "greedy" caption (Rennie et al.)
    reward: dict = field(default_factory=lambda: dict(DEFAULT_REWARD))
    baseline: str = "mean"
    # the share of each batch's images drawn by how much their samples' rewards disagreed
    # when last drawn (training/captions_self_critical.py); the rest are drawn uniformly
    informative_share: float = 0.0
    # hard attention (model={"attention": "hard"}; training/hard_attention.py): the weights of
    # the REINFORCE term of the sampled locations and of their entropy, the decay of the
    # moving-average baseline (teacher forcing), and the probability that a caption is
    # written with the expected context instead of sampled locations (Xu et al., sec. 4.1)
    hard_reinforce: float = 0.1  # at 1.0, 21.5% of captions complete against 77.3% (methods.json)
    hard_entropy: float = 0.002
    hard_baseline_decay: float = 0.9
    hard_expected_context: float = 0.5
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
        self._check_sampling_ramp()
        self._check_self_critical()
        self._check_hard_attention()
        if not 0.0 <= self.max_minutes < math.inf:
            raise ValueError("max_minutes must be a number of minutes >= 0 (0: no budget)")
        if not (isinstance(self.augmented_views, int) and self.augmented_views >= 0):
            raise ValueError("augmented_views must be a whole number >= 0")
        if self.augmented_views and self.fine_tune:
            raise ValueError("augmented views are cached grids: set fine_tune=false")
        if self.self_critical_samples and self.fine_tune:
            raise ValueError("self-critical training reads cached grids: set fine_tune=false")
        if not 0.0 <= self.glimpse_supervision < math.inf:
            raise ValueError("glimpse_supervision is a weight: a number >= 0")
        if self.glimpse_supervision and (
            self.task != "vqa" or self.model.get("fusion") == "concat"
        ):
            raise ValueError("glimpse_supervision needs a VQA model with attention (glimpses)")
        if self.task != "captions":
            unused = self._changed(CAPTION_ONLY)
            if unused:
                raise ValueError(f"{', '.join(unused)}: settings of caption training only")

    def _check_sampling_ramp(self) -> None:
        if not 0.0 <= self.scheduled_sampling <= 1.0:
            raise ValueError("scheduled_sampling is a probability: from 0 to 1")
        if self.scheduled_sampling_start < 0 or self.scheduled_sampling_every < 1:
            raise ValueError("scheduled_sampling_start must be >= 0 and _every >= 1 (epochs)")
        if not 0.0 < self.scheduled_sampling_step <= 1.0:
            raise ValueError("scheduled_sampling_step must be above 0 and at most 1")
        ramp = self._changed(SAMPLING_RAMP)
        if ramp and not self.scheduled_sampling:
            raise ValueError(f"{', '.join(ramp)} ramp up to scheduled_sampling: set it above 0")

    def _check_self_critical(self) -> None:
        if not isinstance(self.reward, dict) or not self.reward:
            raise ValueError('reward is a dict of reward names to weights: {"cider_d": 1.0}')
        unknown = sorted(set(self.reward) - set(REWARDS))
        if unknown:
            raise ValueError(f"unknown rewards {unknown}: choose from {', '.join(REWARDS)}")
        for name, weight in self.reward.items():
            if not isinstance(weight, int | float) or isinstance(weight, bool):
                raise ValueError(f"the weight of reward {name} must be a number, not {weight!r}")
            if not 0.0 < weight < math.inf:
                raise ValueError(f"the weight of reward {name} must be above 0, not {weight}")
        if self.baseline not in BASELINES:
            raise ValueError(
                f"baseline must be one of {', '.join(BASELINES)}, not {self.baseline!r}"
            )
        if not 0.0 <= self.informative_share < 1.0:
            raise ValueError("informative_share is a share of the batch: from 0 up to (not) 1")
        if round(self.informative_share * self.batch_size) >= self.batch_size:
            raise ValueError("informative_share leaves no image of the batch drawn uniformly")
        defaults = (("reward", DEFAULT_REWARD), ("baseline", "mean"), ("informative_share", 0.0))
        changed = [k for k, default in defaults if getattr(self, k) != default]
        if changed and not self.self_critical_samples:
            raise ValueError(
                f"{', '.join(changed)}: settings of self-critical training (self_critical_samples)"
            )
        if self.baseline == "mean" and self.self_critical_samples == 1:
            raise ValueError("baseline mean compares the samples of an image: sample 2 or more")

    def _check_hard_attention(self) -> None:
        weights = ("hard_reinforce", "hard_entropy")
        if any(not 0.0 <= getattr(self, k) < math.inf for k in weights):
            raise ValueError("hard_reinforce and hard_entropy are weights: numbers >= 0")
        if not 0.0 <= self.hard_baseline_decay < 1.0:
            raise ValueError("hard_baseline_decay must be from 0 up to (not including) 1")
        if not 0.0 <= self.hard_expected_context <= 1.0:
            raise ValueError("hard_expected_context is a probability: from 0 to 1")
        changed = self._changed(HARD_ATTENTION)
        hard = self.model.get("attention") == "hard"
        if changed and self.task == "captions" and not hard and not self.init_from:
            wanted = 'model={"attention": "hard"}'
            raise ValueError(f"{', '.join(changed)}: settings of hard attention: set {wanted}")

    def _changed(self, names: tuple[str, ...]) -> list[str]:
        """Those of the fields `names` (plain defaults, no factories) set to another value."""
        defaults = {f.name: f.default for f in fields(self)}
        return [k for k in names if getattr(self, k) != defaults[k]]

    def to_dict(self) -> dict:
        return asdict(self)


def parse_override(item: str) -> tuple[str, object]:
    """`lr=3e-4` -> ("lr", 3e-4), `fine_tune=true` -> True, `encoder=resnet50` -> "resnet50":
    JSON where the value is JSON, else the text."""
    key, sep, value = item.partition("=")
    if not sep:
        raise ValueError(f"override {item!r} is not key=value")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


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
    values.update(parse_override(item) for item in overrides or [])
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown config keys: {sorted(unknown)}")
    return TrainConfig(**values)
