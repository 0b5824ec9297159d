"""The decoding fields a client may send with a caption request, checked in one place for the
API's forms and the CLI alike.

Each field stays within its `GLIMPSE_*` bound, and a field that would mean nothing is refused
rather than ignored: the sampling fields without `sample`, a beam size with it, more captions
from beam search than it has beams, a length or repeat penalty with a single candidate to
rank. A bad field is `InvalidField` naming it.
"""

from dataclasses import dataclass

from models.decoding import REPEAT_PENALTY
from models.sampling import Sampling
from service.errors import InvalidField
from service.settings import Settings

MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds; JSON clients keep 63 bits exactly


@dataclass(frozen=True)
class DecodingFields:
    """The fields as sent; None where a field was not sent."""

    sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    num_captions: int | None = None
    length_penalty: float | None = None
    repeat_penalty: float | None = None


@dataclass(frozen=True)
class Decoding:
    """What the fields ask for: `sampling` None means beam search (or greedy)."""

    num_captions: int = 1
    length_penalty: float = 0.0
    sampling: Sampling | None = None
    seed: int | None = None
    repeat_penalty: float = REPEAT_PENALTY


def check_decoding(
    sent: DecodingFields, beam_size: int, beam_size_sent: bool, settings: Settings
) -> Decoding:
    """The decoding `sent` asks for beside `beam_size` (checked by the caller), or InvalidField."""
    if sent.sample and beam_size_sent:
        raise InvalidField("beam_size", "beam_size does not apply when sample=true")
    sampling = _sampling(sent, settings) if sent.sample else None
    if sampling is None:
        _no_sampling(sent)
    num_captions = 1 if sent.num_captions is None else sent.num_captions
    if not 1 <= num_captions <= settings.max_num_captions:
        raise InvalidField(
            "num_captions",
            f"num_captions must be between 1 and {settings.max_num_captions}, got {num_captions}",
        )
    if sampling is None and num_captions > beam_size:
        raise InvalidField(
            "num_captions",
            f"num_captions must not exceed beam_size ({beam_size}): beam search returns its "
            "best beams; raise beam_size, or set sample=true for that many samples",
        )
    length_penalty = 0.0 if sent.length_penalty is None else sent.length_penalty
    if not 0 <= length_penalty <= settings.max_length_penalty:
        raise InvalidField(
            "length_penalty",
            f"length_penalty must be between 0 and {settings.max_length_penalty}, "
            f"got {length_penalty}",
        )
    repeat_penalty = REPEAT_PENALTY if sent.repeat_penalty is None else sent.repeat_penalty
    if not 0 <= repeat_penalty <= settings.max_repeat_penalty:
        raise InvalidField(
            "repeat_penalty",
            f"repeat_penalty must be between 0 and {settings.max_repeat_penalty}, "
            f"got {repeat_penalty}",
        )
    candidates = num_captions if sampling is not None else beam_size
    for name in ("length_penalty", "repeat_penalty"):
        if getattr(sent, name) is not None and candidates == 1:
            raise InvalidField(
                name,
                f"{name} ranks candidates: it needs beam search (beam_size > 1) or several "
                "samples (num_captions > 1)",
            )
    return Decoding(num_captions, length_penalty, sampling, sent.seed, repeat_penalty)


def _no_sampling(sent: DecodingFields) -> None:
    """Refuse the sampling fields of a request that does not sample."""
    for name in ("temperature", "top_k", "top_p", "seed"):
        if getattr(sent, name) is not None:
            raise InvalidField(name, f"{name} applies only when sample=true")


def _sampling(sent: DecodingFields, settings: Settings) -> Sampling:
    temperature = 1.0 if sent.temperature is None else sent.temperature
    if not 0 < temperature <= settings.max_temperature:  # also refuses nan
        raise InvalidField(
            "temperature",
            f"temperature must be above 0 and at most {settings.max_temperature}, "
            f"got {temperature}",
        )
    top_k = sent.top_k or 0  # 0: every word
    if sent.top_k is not None and not 1 <= top_k <= settings.max_sample_top_k:
        raise InvalidField(
            "top_k", f"top_k must be between 1 and {settings.max_sample_top_k}, got {top_k}"
        )
    top_p = 1.0 if sent.top_p is None else sent.top_p
    if not 0 < top_p <= 1:
        raise InvalidField("top_p", f"top_p must be above 0 and at most 1, got {top_p}")
    if sent.seed is not None and not 0 <= sent.seed <= MAX_SEED:
        raise InvalidField("seed", f"seed must be between 0 and 2**63 - 1, got {sent.seed}")
    return Sampling(temperature, top_k, top_p)
