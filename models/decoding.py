"""Caption decoding: greedy, batched beam search and sampling over a `Captioner`.

Every path takes the raw encoder grid and returns, per image, the words' ids, the
log-probability of the caption, the attention map (over the L grid cells) used to emit each
word and each word's log-probability, so the CLI, the API and the evaluator all share one
path. Asked for several captions, a path returns the best with the others as `alternatives`.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerFast

from models.captioner import Captioner
from models.sampling import Sampling, draw, filtered_probs, uniforms
from models.text import BOS_ID, EOS_ID, decode

Generators = torch.Generator | Sequence[torch.Generator | None] | None
# Chosen on the bundled captioner's validation split, the smallest at its best: four-object
# captions true 156 of 161 without it, 157 at 2, 158 at 5 and at 10 (docs/training.md).
REPEAT_PENALTY = 5.0


@dataclass
class Caption:
    tokens: list[int]  # word ids, without <bos>/<eos>
    score: float  # log-probability, <eos> included when emitted
    alphas: Tensor  # (len(tokens), L): one attention map per word
    logprobs: Tensor  # (len(tokens),): each word's log-probability (softmax, no temperature)
    alternatives: list["Caption"] = field(default_factory=list)  # the next best, best first


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode: beam search (beam_size 1 = greedy) or, with `sampling`, sampling; the
    most words per caption; how many captions per image (the n best beams, at most beam_size,
    or n samples), ranked by log p / (words + 1)^length_penalty - repeat_penalty * R, where R
    is `looked_again`."""

    beam_size: int = 3
    max_len: int = 20
    length_penalty: float = 0.0
    num_captions: int = 1
    sampling: Sampling | None = None
    repeat_penalty: float = REPEAT_PENALTY

    def __post_init__(self) -> None:
        if self.length_penalty < 0:
            raise ValueError("length_penalty must be >= 0")
        if self.repeat_penalty < 0:
            raise ValueError("repeat_penalty must be >= 0")
        if self.sampling is None and not 1 <= self.num_captions <= self.beam_size:
            raise ValueError("beam search returns between 1 and beam_size captions")


def decode_captions(
    model: Captioner, features: Tensor, options: DecodeOptions, generators: Generators = None
) -> list[Caption]:
    """The one entry point the service, training and benchmarks decode through.

    `generators` drive sampling: one for all images, or one per image (then an image's words
    depend on its own generator only); None draws from torch's global generator.
    """
    o = options
    if o.sampling is not None:
        s = o.sampling
        return sample(
            model,
            features,
            o.max_len,
            s.temperature,
            generators,
            top_k=s.top_k,
            top_p=s.top_p,
            num_captions=o.num_captions,
            length_penalty=o.length_penalty,
            repeat_penalty=o.repeat_penalty,
        )
    if o.beam_size == 1:
        return greedy(model, features, o.max_len)
    return beam_search(
        model,
        features,
        o.beam_size,
        o.max_len,
        o.length_penalty,
        o.num_captions,
        repeat_penalty=o.repeat_penalty,
    )


def _spoken(caption: Caption, tokenizer: PreTrainedTokenizerFast) -> tuple[list[str], list[int]]:
    """The caption's words and the positions of the tokens they come from; a special token the
    model emitted (`decode` skips it) is left out, so that words, maps and probabilities stay
    aligned one to one."""
    words, kept = [], []
    for position, token in enumerate(caption.tokens):
        for word in decode(tokenizer, [token]):  # nothing for a special token
            words.append(word)
            kept.append(position)
    return words, kept


def words_and_maps(
    caption: Caption, tokenizer: PreTrainedTokenizerFast, grid: tuple[int, int]
) -> tuple[list[str], np.ndarray]:
    """The caption's words, each with the (h, w) attention map it was written with."""
    words, kept = _spoken(caption, tokenizer)
    maps = caption.alphas[kept].reshape(len(kept), *grid).float().cpu().numpy()  # (T, h, w)
    return words, maps


def word_probabilities(caption: Caption, tokenizer: PreTrainedTokenizerFast) -> np.ndarray:
    """p of each word `words_and_maps` returns, under the model's softmax: (T,) in (0, 1]."""
    _, kept = _spoken(caption, tokenizer)
    return caption.logprobs[kept].exp().double().cpu().numpy()  # (T,)


def _unbatch(
    tokens: Tensor, scores: Tensor, alphas: Tensor, logprobs: Tensor, lengths: Tensor
) -> list[Caption]:
    return [
        Caption(tokens[b, :n].tolist(), float(scores[b]), alphas[b, :n], logprobs[b, :n])
        for b, n in enumerate(lengths.tolist())
    ]


def looked_again(caption: Caption) -> float:
    """How often the caption says a word again where it said it before: the sum, over pairs
    of equal words, of the chance that their two maps point at the same cell. Two objects
    that share a word are looked at in two places (near 0); one object named twice, in one
    (up to 1 a pair)."""
    tokens = torch.tensor(caption.tokens)
    same = (tokens.unsqueeze(0) == tokens.unsqueeze(1)).triu(diagonal=1)  # (T, T) pairs i < j
    alphas = caption.alphas.float().cpu()
    return float(((alphas @ alphas.T) * same).sum())


def _ranking_score(caption: Caption, length_penalty: float, penalty: float) -> float:
    """log p / (words + 1)^length_penalty - penalty (repeat_penalty x `looked_again`)."""
    return caption.score / max(len(caption.tokens) + 1, 1) ** length_penalty - penalty


def _last_word_repeats(history: Tensor, alpha_history: Tensor) -> Tensor:
    """What each beam's last word adds to `looked_again`: (B*K,) the overlap of its map with
    the map of each earlier time the same word was said."""
    said_before = history[:, :-1] == history[:, -1:]  # (B*K, T-1)
    last = alpha_history[:, -1:].transpose(1, 2)  # (B*K, L, 1)
    overlaps = (alpha_history[:, :-1] @ last).squeeze(-1)  # (B*K, T-1)
    return (overlaps * said_before).sum(dim=1)


def _ranked(scored: list[tuple[float, Caption]], n: int) -> Caption:
    """The best of the (ranking score, caption) pairs with the next n - 1 as its alternatives
    (stable on ties)."""
    ranked = [c for _, c in sorted(scored, key=lambda x: x[0], reverse=True)[:n]]
    return replace(ranked[0], alternatives=ranked[1:])


@torch.inference_mode()
def greedy(model: Captioner, features: Tensor, max_len: int = 20) -> list[Caption]:
    """The most likely word at every step; `sample` at temperature -> 0."""
    return _decode_one_path(model, features, max_len, lambda logits: logits.argmax(dim=-1))


@torch.inference_mode()
def sample(
    model: Captioner,
    features: Tensor,
    max_len: int = 20,
    temperature: float = 1.0,
    generator: Generators = None,
    *,
    top_k: int = 0,
    top_p: float = 1.0,
    num_captions: int = 1,
    length_penalty: float = 0.0,
    repeat_penalty: float = 0.0,
) -> list[Caption]:
    """Words drawn from softmax(logits / temperature) within top-k and top-p, for diverse
    captions; `num_captions` samples per image, the best first as `DecodeOptions` ranks them
    (see `decode_captions` for `generator`). Scores and word probabilities are the model's,
    without temperature."""
    sampling = Sampling(temperature, top_k, top_p)
    b, n = features.size(0), num_captions
    gens = list(generator) if isinstance(generator, Sequence) else [generator] * b
    if len(gens) != b:
        raise ValueError(f"{len(gens)} generators for {b} images")

    def choose(logits: Tensor) -> Tensor:  # (B*n, V) -> (B*n,)
        return draw(filtered_probs(logits, sampling), uniforms(gens, n, logits.device))

    drawn = _decode_one_path(model, features, max_len, choose, n)  # image by image, n each
    penalise = repeat_penalty if n > 1 else 0.0  # one sample an image: nothing to rank
    scored = [
        (_ranking_score(c, length_penalty, penalise * looked_again(c) if penalise else 0.0), c)
        for c in drawn
    ]
    return [_ranked(scored[i * n : (i + 1) * n], n) for i in range(b)]


def _decode_one_path(
    model: Captioner,
    features: Tensor,
    max_len: int,
    choose: Callable[[Tensor], Tensor],
    per_image: int = 1,
) -> list[Caption]:
    """`per_image` captions of each image (rows i*per_image ...), one word `choose`n per step."""
    prepared = model.prepare(features).beams(per_image)
    b = features.size(0) * per_image
    tokens = torch.full((b,), BOS_ID, dtype=torch.long, device=features.device)
    scores = features.new_zeros(b)
    lengths = torch.full((b,), max_len, dtype=torch.long, device=features.device)
    done = torch.zeros(b, dtype=torch.bool, device=features.device)
    out_tokens, out_alphas, out_logprobs = [], [], []
    for t in range(max_len):
        logits, prepared.state, alpha = model.step(tokens, prepared)  # (B, V), (B, L)
        tokens = choose(logits)  # (B,)
        step_score = logits.log_softmax(dim=-1).gather(1, tokens.unsqueeze(1)).squeeze(1)
        scores = scores + torch.where(done, 0.0, step_score)
        ended = (tokens == EOS_ID) & ~done
        lengths = torch.where(ended, t, lengths)
        done = done | ended
        out_tokens.append(tokens)
        out_alphas.append(alpha)
        out_logprobs.append(step_score)
        if done.all():
            break
    stacked = (torch.stack(x, 1) for x in (out_tokens, out_alphas, out_logprobs))
    tokens_t, alphas_t, logprobs_t = stacked  # (B, T), (B, T, L), (B, T)
    return _unbatch(tokens_t, scores, alphas_t, logprobs_t, lengths)


@torch.inference_mode()
def beam_search(
    model: Captioner,
    features: Tensor,
    beam_size: int = 3,
    max_len: int = 20,
    length_penalty: float = 0.0,
    num_captions: int = 1,
    *,
    repeat_penalty: float = 0.0,
) -> list[Caption]:
    """Beam search over B images x K beams as one (B*K) batch.

    A beam that emits <eos> is set aside as a finished hypothesis (ranked as `DecodeOptions`
    says) and its slot goes to the next best candidate, so K beams stay alive. An image stops
    when no live beam can still beat its n-th best finished caption (n = num_captions <= K);
    the n best come back, the best first.
    """
    b, k, n = features.size(0), beam_size, num_captions
    device = features.device
    prepared = model.prepare(features).beams(k)
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all K beams start identical: expand only the first
    tokens = torch.full((b * k,), BOS_ID, dtype=torch.long, device=device)
    # Histories are row-first like the decoder state, beam j of image i at row i*K + j.
    history = torch.empty(b * k, 0, dtype=torch.long, device=device)  # words so far
    alpha_history = torch.empty(b * k, 0, features.size(1), device=device)
    logp_history = torch.empty(b * k, 0, device=device)  # each word's log-probability
    repeats = torch.zeros(b * k, device=device)  # each beam's `looked_again` so far
    finished: list[list[tuple[float, Caption]]] = [[] for _ in range(b)]  # (ranking, caption)
    best = torch.full((b,), float("-inf"), device=device)  # n-th best finished ranking score
    active = torch.ones(b, dtype=torch.bool, device=device)
    ids = list(range(b))  # the original image of each row still decoding
    offsets = torch.arange(b, device=device).unsqueeze(1) * k  # (B, 1) first row of each image
    longest = (max_len + 1) ** length_penalty  # the normaliser of the longest caption

    def hypothesis(row: int, score: float) -> tuple[float, Caption]:  # the beam at `row`
        caption = Caption(history[row].tolist(), score, alpha_history[row], logp_history[row])
        penalty = repeat_penalty * float(repeats[row]) if repeat_penalty else 0.0
        return _ranking_score(caption, length_penalty, penalty), caption

    # Every image left in the batch is active at the top of a step: the others were dropped.
    for _ in range(max_len):
        logits, state, alpha = model.step(tokens, prepared)  # (B*K, V), (B*K, L)
        vocab = logits.size(-1)
        step_logp = logits.log_softmax(dim=-1).view(b, k * vocab)  # (B, K*V)
        candidates = scores.view(b, k, 1) + step_logp.view(b, k, vocab)  # (B, K, V)
        top_scores, top_ids = candidates.view(b, k * vocab).topk(2 * k, dim=1)  # (B, 2K)
        origin, word = top_ids // vocab, top_ids % vocab  # (B, 2K)
        word_logp = step_logp.gather(1, top_ids)  # (B, 2K)
        ends = word == EOS_ID

        # Candidates in the top K that emit <eos> become finished hypotheses.
        for i, j in (ends[:, :k] & top_scores[:, :k].isfinite()).nonzero().tolist():
            hyps = finished[ids[i]]
            hyps.append(hypothesis(i * k + int(origin[i, j]), top_scores[i, j].item()))
            if len(hyps) >= n:
                best[i] = sorted(score for score, _ in hyps)[-n]

        # The best K candidates that do not end stay alive.
        keep = torch.sort(ends.int(), dim=1, stable=True).indices[:, :k]  # (B, K)
        scores = top_scores.gather(1, keep)
        origin, word, word_logp = (x.gather(1, keep) for x in (origin, word, word_logp))
        rows = (offsets + origin).flatten()  # (B*K,) rows of the previous beams
        history = torch.cat([history[rows], word.view(-1, 1)], 1)
        logp_history = torch.cat([logp_history[rows], word_logp.view(-1, 1)], 1)
        alpha_history = torch.cat([alpha_history[rows], alpha[rows].unsqueeze(1)], 1)
        if repeat_penalty:
            repeats = repeats[rows] + _last_word_repeats(history, alpha_history)
        prepared = replace(prepared, state=state).rows(rows)
        tokens = word.flatten()

        # Log-probabilities only fall as words are added and repeats only grow: a live beam's
        # best future ranking is its current score, normalised by the longest length it
        # could still reach, less its repeats so far.
        bound = scores[:, 0] / longest
        if repeat_penalty:
            bound = (scores / longest - repeat_penalty * repeats.view(b, k)).max(dim=1).values
        active = ~(best >= bound)
        alive = int(active.sum())  # the step's one look at the flags
        if alive == 0:
            break
        if alive < b:  # drop finished images: they would only cost compute
            live = active.nonzero().flatten()  # (B',)
            ids = [ids[i] for i in live.tolist()]
            b = len(ids)
            scores, best, active = scores[live], best[live], active[live]
            beams = (live.unsqueeze(1) * k + torch.arange(k, device=device)).flatten()
            history, alpha_history = history[beams], alpha_history[beams]
            logp_history, tokens, repeats = logp_history[beams], tokens[beams], repeats[beams]
            prepared = prepared.images(live)
            offsets = torch.arange(b, device=device).unsqueeze(1) * k

    # Out of room: the live beams of the images still active end here, cut.
    for i, j in (active.unsqueeze(1) & scores.isfinite()).nonzero().tolist():
        finished[ids[i]].append(hypothesis(i * k + j, scores[i, j].item()))
    return [_ranked(hyps, n) for hyps in finished]
