"""Caption decoding: greedy, batched beam search and sampling over a `Captioner`.

Every path takes the raw encoder grid and returns, per image, the words' ids, the
log-probability of the caption, and the attention map (over the L grid cells) used to emit
each word, so the CLI, the API and the evaluator all share one path.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerFast

from models.captioner import Captioner, Prepared
from models.text import BOS_ID, EOS_ID, decode


@dataclass
class Caption:
    tokens: list[int]  # word ids, without <bos>/<eos>
    score: float  # log-probability, <eos> included when emitted
    alphas: Tensor  # (len(tokens), L): one attention map per word


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode: beams of the search (1 = greedy) and the most words per caption."""

    beam_size: int = 3
    max_len: int = 20
    length_penalty: float = 0.0


def decode_captions(model: Captioner, features: Tensor, options: DecodeOptions) -> list[Caption]:
    """The one entry point the service, training and benchmarks decode through."""
    if options.beam_size == 1:
        return greedy(model, features, options.max_len)
    return beam_search(model, features, options.beam_size, options.max_len, options.length_penalty)


def words_and_maps(
    caption: Caption, tokenizer: PreTrainedTokenizerFast, grid: tuple[int, int]
) -> tuple[list[str], np.ndarray]:
    """The caption's words, each with the (h, w) attention map it was written with.

    A special token the model emitted (`decode` skips it) loses its map too, so that the
    words and the maps stay aligned one to one.
    """
    words, kept = [], []
    for position, token in enumerate(caption.tokens):
        for word in decode(tokenizer, [token]):  # nothing for a special token
            words.append(word)
            kept.append(position)
    maps = caption.alphas[kept].reshape(len(kept), *grid).float().cpu().numpy()  # (T, h, w)
    return words, maps


def _unbatch(tokens: Tensor, scores: Tensor, alphas: Tensor, lengths: Tensor) -> list[Caption]:
    return [
        Caption(tokens[b, :n].tolist(), float(scores[b]), alphas[b, :n])
        for b, n in enumerate(lengths.tolist())
    ]


@torch.inference_mode()
def greedy(model: Captioner, features: Tensor, max_len: int = 20) -> list[Caption]:
    """The most likely word at every step; `sample` with temperature 0."""
    return _decode_one_path(model, features, max_len, temperature=0.0, generator=None)


@torch.inference_mode()
def sample(
    model: Captioner,
    features: Tensor,
    max_len: int = 20,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[Caption]:
    """Words drawn from softmax(logits / temperature), for diverse captions."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0; use greedy() for temperature 0")
    return _decode_one_path(model, features, max_len, temperature, generator)


def _decode_one_path(
    model: Captioner,
    features: Tensor,
    max_len: int,
    temperature: float,
    generator: torch.Generator | None,
) -> list[Caption]:
    prepared = model.prepare(features)
    b = features.size(0)
    tokens = torch.full((b,), BOS_ID, dtype=torch.long, device=features.device)
    scores = features.new_zeros(b)
    lengths = torch.full((b,), max_len, dtype=torch.long, device=features.device)
    done = torch.zeros(b, dtype=torch.bool, device=features.device)
    out_tokens, out_alphas = [], []
    for t in range(max_len):
        logits, prepared.state, alpha = model.step(tokens, prepared)  # (B, V), (B, L)
        logprobs = logits.log_softmax(dim=-1)
        if temperature == 0:
            tokens = logprobs.argmax(dim=-1)
        else:
            probs = (logits / temperature).softmax(dim=-1)
            tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        step_score = logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1)
        scores = scores + torch.where(done, 0.0, step_score)
        ended = (tokens == EOS_ID) & ~done
        lengths = torch.where(ended, t, lengths)
        done = done | ended
        out_tokens.append(tokens)
        out_alphas.append(alpha)
        if done.all():
            break
    return _unbatch(torch.stack(out_tokens, 1), scores, torch.stack(out_alphas, 1), lengths)


@torch.inference_mode()
def beam_search(
    model: Captioner,
    features: Tensor,
    beam_size: int = 3,
    max_len: int = 20,
    length_penalty: float = 0.0,
) -> list[Caption]:
    """Beam search over B images x K beams as one (B*K) batch.

    A beam that emits <eos> is set aside as a finished hypothesis (scored by
    log p / len^length_penalty) and its slot goes to the next best candidate, so K beams stay
    alive. An image stops when no live beam can still beat its best finished caption.
    """
    b, k = features.size(0), beam_size
    device = features.device
    prepared = model.prepare(features).beams(k)
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all K beams start identical: expand only the first
    tokens = torch.full((b * k,), BOS_ID, dtype=torch.long, device=device)
    history = torch.empty(b, k, 0, dtype=torch.long, device=device)  # words so far
    alpha_history = torch.empty(b, k, 0, features.size(1), device=device)
    finished: list[list[Caption]] = [[] for _ in range(b)]
    best = torch.full((b,), float("-inf"), device=device)  # best finished normalised score
    active = torch.ones(b, dtype=torch.bool, device=device)
    ids = list(range(b))  # the original image of each row still decoding

    for t in range(max_len):
        offsets = torch.arange(b, device=device).unsqueeze(1) * k  # (B, 1)
        logits, state, alpha = model.step(tokens, prepared)  # (B*K, V), (B*K, L)
        vocab = logits.size(-1)
        candidates = scores.unsqueeze(-1) + logits.log_softmax(dim=-1).view(b, k, vocab)
        top_scores, top_ids = candidates.view(b, k * vocab).topk(2 * k, dim=1)  # (B, 2K)
        origin, word = top_ids // vocab, top_ids % vocab  # (B, 2K)
        ends = word == EOS_ID

        # Candidates in the top K that emit <eos> become finished hypotheses.
        for i, j in (ends[:, :k] & active.unsqueeze(1) & top_scores[:, :k].isfinite()).nonzero():
            src = origin[i, j]
            caption = Caption(
                history[i, src].tolist(), top_scores[i, j].item(), alpha_history[i, src]
            )
            finished[ids[i]].append(caption)
            best[i] = max(best[i].item(), _normalised(caption, length_penalty))

        # The best K candidates that do not end stay alive.
        keep = torch.sort(ends.int(), dim=1, stable=True).indices[:, :k]  # (B, K)
        scores = top_scores.gather(1, keep)
        origin, word = origin.gather(1, keep), word.gather(1, keep)
        rows = (offsets + origin).flatten()  # (B*K,) rows of the previous beams
        history = torch.cat([history.view(b * k, -1)[rows], word.view(-1, 1)], 1).view(b, k, -1)
        alpha_history = torch.cat(
            [alpha_history.flatten(0, 1)[rows], alpha[rows].unsqueeze(1)], 1
        ).view(b, k, t + 1, -1)
        prepared = Prepared(prepared.features, prepared.projected, (state[0][rows], state[1][rows]))
        tokens = word.flatten()

        # Log-probabilities only fall as words are added: a live beam's best future score is
        # its current one, normalised by the longest length it could still reach.
        bound = scores[:, 0] / (max_len + 1) ** length_penalty
        active &= ~(best >= bound)
        if not active.any():
            break
        if not active.all():  # drop finished images: they would only cost compute
            live = active.nonzero().flatten()  # (B',)
            ids = [ids[i] for i in live.tolist()]
            b = len(ids)
            scores, best, active = scores[live], best[live], active[live]
            history, alpha_history = history[live], alpha_history[live]
            tokens = tokens.view(-1, k)[live].flatten()
            prepared = prepared.images(live)

    for i in active.nonzero().flatten().tolist():  # out of room: live beams end here, cut
        for j in range(k):
            if scores[i, j].isfinite():
                finished[ids[i]].append(
                    Caption(history[i, j].tolist(), scores[i, j].item(), alpha_history[i, j])
                )
    return [max(hyps, key=lambda c: _normalised(c, length_penalty)) for hyps in finished]


def _normalised(caption: Caption, length_penalty: float) -> float:
    return caption.score / max(len(caption.tokens) + 1, 1) ** length_penalty
