"""Model directories in the Hugging Face layout: config.json, model.safetensors, tokenizer.json
(and answers.json for VQA), optionally domain.safetensors + domain.json (`models.domain`: how
far an image lies from the training images). No pickle: tensors go through safetensors, the
rest is JSON.

A frozen encoder is not saved (it is rebuilt from its published weights, keeping bundled
models at a few MB); a fine-tuned one is saved under the `encoder.` prefix.
"""

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformers import PreTrainedTokenizerFast

from models.captioner import Captioner, CaptionerConfig
from models.domain import KINDS, DomainModel, summary_size
from models.encoders import Encoder, create_encoder
from models.text import load_tokenizer, save_tokenizer
from models.vqa import VQAConfig, VQAModel

FORMAT_VERSION = 1
Head = Captioner | VQAModel
HEADS: dict[str, tuple[type[Head], type]] = {
    "captioner": (Captioner, CaptionerConfig),
    "vqa": (VQAModel, VQAConfig),
}
ENCODER_PREFIX = "encoder."
# Weights renamed since model directories were first written: old prefix -> new, per head.
# The captioner's one LSTM cell and its h/c MLPs became a stack of cells (`cells.N`) and one
# MLP per state part (`init_state.N`); the question encoder's LSTM became any `rnn`.
RENAMED: dict[str, dict[str, str]] = {
    "captioner": {"lstm.": "cells.0.", "init_h.": "init_state.0.", "init_c.": "init_state.1."},
    "vqa": {"question.lstm.": "question.rnn."},
}
DOMAIN_TENSORS, DOMAIN_INFO = "domain.safetensors", "domain.json"


class CheckpointError(Exception):
    """A model directory that is missing, incomplete or corrupt; the message names the file."""


@dataclass
class EncoderSpec:
    """How to rebuild the encoder a head was trained on."""

    name: str
    image_size: int
    options: dict = field(default_factory=dict)  # e.g. {"layers": [10]}
    trainable: bool = False


@dataclass(frozen=True)
class TrainedOn:
    """What a model learned from, for people: the data set's name and a sentence."""

    dataset: str  # e.g. "shapes", "coco"
    description: str


@dataclass
class Checkpoint:
    kind: str  # "captioner" or "vqa"
    model: Head
    encoder: EncoderSpec
    tokenizer: PreTrainedTokenizerFast
    answers: list[str] | None = None
    encoder_state: dict[str, Tensor] | None = None  # only for a fine-tuned encoder
    path: Path | None = None
    trained_on: TrainedOn | None = None
    domain: DomainModel | None = None  # None: the directory has no domain check

    @property
    def name(self) -> str:
        return self.path.name if self.path else self.kind

    def build_encoder(self) -> Encoder:
        """The encoder this head expects, with its published or fine-tuned weights."""
        pretrained = self.encoder_state is None
        encoder = create_encoder(self.encoder.name, pretrained=pretrained, **self.encoder.options)
        if self.encoder_state is not None:
            encoder.load_state_dict(self.encoder_state)
        return encoder


def write_atomic(path: Path, write: Callable[[str], object]) -> None:
    """Write through a temp file in the same directory and rename, so a crash never leaves a
    half-written file under the real name. Temp files of an earlier writer that was killed
    are removed first (one writer per file is assumed)."""
    for stale in path.parent.glob(f".{path.name}.*"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the model from a service user
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_json(path: Path, data: object) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def save_pretrained(
    path: str | Path, checkpoint: Checkpoint, dtype: torch.dtype = torch.float32
) -> Path:
    """Write `checkpoint` as a model directory at `path` (created if needed).

    Floating-point weights are stored as `dtype` (float16 halves a bundled model) and cast
    back to the model's own dtype on loading.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = dict(checkpoint.model.state_dict())
    if checkpoint.encoder_state is not None:
        state |= {ENCODER_PREFIX + k: v for k, v in checkpoint.encoder_state.items()}
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().contiguous().cpu()
        for k, v in state.items()
    }
    write_atomic(path / "model.safetensors", lambda tmp: save_file(tensors, tmp))
    write_atomic(path / "tokenizer.json", lambda tmp: save_tokenizer(checkpoint.tokenizer, tmp))
    if checkpoint.answers is not None:
        _write_json(path / "answers.json", checkpoint.answers)
    if checkpoint.domain is not None:
        save_domain(path, checkpoint.domain)
    config = {
        "format_version": FORMAT_VERSION,
        "model_type": checkpoint.kind,
        "encoder": asdict(checkpoint.encoder),
        "model": asdict(checkpoint.model.config),
    }
    if checkpoint.trained_on is not None:
        config["trained_on"] = asdict(checkpoint.trained_on)
    _write_json(path / "config.json", config)  # last: a directory with a config is complete
    return path


def save_domain(path: str | Path, domain: DomainModel) -> None:
    """Write a domain model into the model directory `path` (tensors first, then its JSON)."""
    path = Path(path)
    tensors = {"mean": domain.mean.contiguous(), "precision": domain.precision.contiguous()}
    write_atomic(path / DOMAIN_TENSORS, lambda tmp: save_file(tensors, tmp))
    _write_json(
        path / DOMAIN_INFO, {"kind": domain.kind, "threshold": domain.threshold} | domain.info
    )


def load_domain(path: str | Path) -> DomainModel | None:
    """The domain model of the model directory `path`, or None when it has none."""
    path = Path(path)
    info_file, tensors_file = path / DOMAIN_INFO, path / DOMAIN_TENSORS
    if not info_file.exists() and not tensors_file.exists():
        return None
    info = _read_json(info_file)
    tensors = _read_tensors(tensors_file)
    mean, precision = tensors.get("mean"), tensors.get("precision")
    if not isinstance(info, dict) or mean is None or precision is None:
        raise CheckpointError(f"{info_file} and {tensors_file} do not hold a domain model")
    info = dict(info)
    kind, threshold = info.pop("kind", None), info.pop("threshold", None)
    if kind not in KINDS or not isinstance(threshold, int | float) or not threshold > 0:
        raise CheckpointError(f"{info_file}: kind must be one of {KINDS}, threshold above 0")
    if mean.ndim != 1 or precision.shape != (len(mean), len(mean)):
        raise CheckpointError(f"{tensors_file}: mean (F,) and precision (F, F) do not match")
    return DomainModel(kind, mean.float(), precision.float(), float(threshold), info)


def record_trained_on(path: str | Path, trained_on: TrainedOn) -> None:
    """Say in an existing model directory's config.json what the model was trained on."""
    config_file = Path(path) / "config.json"
    config = _read_json(config_file)
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file} is not a Glimpse config: not an object")
    _write_json(config_file, config | {"trained_on": asdict(trained_on)})


def _trained_on(config: dict, config_file: Path) -> TrainedOn | None:
    if "trained_on" not in config:
        return None
    try:
        trained_on = TrainedOn(**config["trained_on"])
    except TypeError as exc:
        raise CheckpointError(f"{config_file}: trained_on needs dataset and description") from exc
    if not isinstance(trained_on.dataset, str) or not isinstance(trained_on.description, str):
        raise CheckpointError(f"{config_file}: trained_on's dataset and description are text")
    return trained_on


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise CheckpointError(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


def _read_tensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file; a missing or corrupt one is a CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"missing file {path}")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is corrupt: {exc}") from exc


def renamed(kind: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The weights of a `kind` head under today's names (older directories load unchanged);
    a name may sit under a wrapper's prefix (`head.lstm.` in a training state)."""
    out = {}
    for name, tensor in tensors.items():
        for old, new in RENAMED.get(kind, {}).items():
            prefix, found, rest = name.partition(old)
            if found and (not prefix or prefix.endswith(".")):
                name = prefix + new + rest
                break
        out[name] = tensor
    return out


def load_pretrained(path: str | Path) -> Checkpoint:
    """Rebuild a head from a model directory; raises CheckpointError naming what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"model directory {path} does not exist")
    config = _read_json(path / "config.json")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / 'config.json'} is not a Glimpse config: not an object")
    try:
        kind = config["model_type"]
        model_cls, config_cls = HEADS[kind]
        model = model_cls(config_cls(**config["model"]))
        encoder = EncoderSpec(**config["encoder"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path / 'config.json'} is not a Glimpse config: {exc!r}") from exc

    weights = path / "model.safetensors"
    tensors = _read_tensors(weights)
    encoder_state = {
        k.removeprefix(ENCODER_PREFIX): tensors.pop(k)
        for k in list(tensors)
        if k.startswith(ENCODER_PREFIX)
    }
    try:
        model.load_state_dict(renamed(kind, tensors))
    except RuntimeError as exc:
        raise CheckpointError(f"{weights} does not match {path / 'config.json'}: {exc}") from exc

    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise CheckpointError(f"missing file {tokenizer_file}")
    try:
        tokenizer = load_tokenizer(tokenizer_file)
    except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
        raise CheckpointError(f"{tokenizer_file} is corrupt: {exc}") from exc
    answers: list[str] | None = None
    if isinstance(model, VQAModel):
        listed = _read_json(path / "answers.json")
        if not isinstance(listed, list) or len(listed) != model.config.num_answers:
            raise CheckpointError(
                f"{path / 'answers.json'} must list the model's {model.config.num_answers} answers"
            )
        answers = listed
    model.eval()
    domain = load_domain(path)
    if domain is not None and len(domain.mean) != summary_size(domain.kind, model.config.feat_dim):
        raise CheckpointError(f"{path / DOMAIN_TENSORS} does not match the encoder's channels")
    trained_on = _trained_on(config, path / "config.json")
    return Checkpoint(
        kind, model, encoder, tokenizer, answers, encoder_state or None, path, trained_on, domain
    )
