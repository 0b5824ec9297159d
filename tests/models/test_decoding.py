import itertools
import math

import pytest
import torch

from factories import tiny_captioner_config
from models.captioner import Captioner
from models.decoding import (
    Caption,
    DecodeOptions,
    beam_search,
    decode_captions,
    greedy,
    looked_again,
    sample,
    word_probabilities,
    words_and_maps,
)
from models.sampling import Sampling, draw, filtered_probs
from models.text import BOS_ID, EOS_ID, build_tokenizer


@pytest.fixture(scope="module")
def model() -> Captioner:
    torch.manual_seed(2)
    model = Captioner(tiny_captioner_config(vocab_size=9, feature_dim=6, grid=(2, 3), d_model=12))
    with torch.no_grad():  # widen the untrained weights so that captions vary between images
        for p in model.parameters():
            p.mul_(1.5)
    return model.eval()


@pytest.fixture(scope="module")
def features() -> torch.Tensor:
    return torch.randn(6, 6, 6, generator=torch.Generator().manual_seed(0))  # (B, L, D)


@torch.no_grad()
def teacher_forced(
    model: Captioner, feats: torch.Tensor, words: list[int], max_len: int
) -> tuple[list[float], torch.Tensor]:
    """Log-probability of each of `words` (+ <eos> unless cut at max_len) and each word's map,
    by teacher forcing."""
    targets = words + ([EOS_ID] if len(words) < max_len else [])
    prepared = model.prepare(feats.unsqueeze(0))
    token, out, maps = torch.tensor([BOS_ID]), [], []
    for target in targets:
        logits, prepared.state, alpha = model.step(token, prepared)
        out.append(logits.log_softmax(-1)[0, target].item())
        maps.append(alpha[0])
        token = torch.tensor([target])
    return out, torch.stack(maps)[: len(words)]


def step_logprobs(model: Captioner, feats: torch.Tensor, words: list[int], max_len: int) -> list:
    return teacher_forced(model, feats, words, max_len)[0]


def sequence_score(model: Captioner, feats: torch.Tensor, words: list[int], max_len: int) -> float:
    return sum(step_logprobs(model, feats, words, max_len))


def test_the_fixture_makes_search_matter(model: Captioner, features: torch.Tensor) -> None:
    """Guards the tests below against a degenerate model on which any decoder agrees."""
    greedy_captions = greedy(model, features, 7)
    beam_captions = beam_search(model, features, 3, 7)
    assert len({tuple(c.tokens) for c in greedy_captions}) > 1
    assert any(
        b.score > g.score + 1e-3 for g, b in zip(greedy_captions, beam_captions, strict=True)
    )


def test_beam_of_one_equals_greedy(model: Captioner, features: torch.Tensor) -> None:
    for g, b in zip(greedy(model, features, 7), beam_search(model, features, 1, 7), strict=True):
        assert g.tokens == b.tokens
        assert g.score == pytest.approx(b.score, abs=1e-4)
        assert torch.allclose(g.alphas, b.alphas, atol=1e-5)


def test_batched_beam_equals_one_image_at_a_time(model: Captioner, features: torch.Tensor) -> None:
    batched = beam_search(model, features, beam_size=3, max_len=8)
    for i, caption in enumerate(batched):
        alone = beam_search(model, features[i : i + 1], beam_size=3, max_len=8)[0]
        assert caption.tokens == alone.tokens
        assert caption.score == pytest.approx(alone.score, abs=1e-4)
        assert torch.allclose(caption.alphas, alone.alphas, atol=1e-5)


def test_wide_beam_finds_the_exhaustive_optimum(model: Captioner, features: torch.Tensor) -> None:
    max_len, vocab = 3, model.config.vocab_size
    words = [w for w in range(vocab) if w != EOS_ID]
    for i in range(3):
        feats = features[i]
        best = max(
            (sequence_score(model, feats, list(seq), max_len), list(seq))
            for n in range(max_len + 1)
            for seq in itertools.product(words, repeat=n)
        )
        found = beam_search(model, feats.unsqueeze(0), beam_size=len(words) ** 2, max_len=max_len)
        assert found[0].tokens == best[1]
        assert found[0].score == pytest.approx(best[0], abs=1e-4)


def test_beam_scores_are_the_captions_log_probabilities(
    model: Captioner, features: torch.Tensor
) -> None:
    for feats, caption in zip(features, beam_search(model, features, 3, 6), strict=True):
        assert caption.score == pytest.approx(
            sequence_score(model, feats, caption.tokens, 6), abs=1e-4
        )


@pytest.mark.parametrize("decode", ["greedy", "beam", "sample"])
def test_one_attention_distribution_per_word(
    model: Captioner, features: torch.Tensor, decode: str
) -> None:
    captions = {
        "greedy": lambda: greedy(model, features, 6),
        "beam": lambda: beam_search(model, features, 4, 6),
        "sample": lambda: sample(model, features, 6, generator=torch.Generator().manual_seed(0)),
    }[decode]()
    assert len(captions) == len(features)
    for caption in captions:
        assert len(caption.tokens) <= 6 and EOS_ID not in caption.tokens
        assert caption.alphas.shape == (len(caption.tokens), 6)
        assert torch.allclose(caption.alphas.sum(-1), torch.ones(len(caption.tokens)), atol=1e-5)


def test_sampling_is_seeded_and_cold_sampling_is_greedy(
    model: Captioner, features: torch.Tensor
) -> None:
    def run(seed: int, temperature: float = 1.0) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        return [c.tokens for c in sample(model, features, 6, temperature, gen)]

    assert run(0) == run(0)
    assert run(0, temperature=1e-4) == [c.tokens for c in greedy(model, features, 6)]
    with pytest.raises(ValueError):
        sample(model, features, temperature=0.0)


def test_words_and_maps_stay_aligned_when_a_special_token_is_emitted() -> None:
    tokenizer = build_tokenizer(["red circle"])
    red, circle = (tokenizer.convert_tokens_to_ids(w) for w in ("red", "circle"))
    alphas = torch.arange(3 * 6, dtype=torch.float32).view(3, 6)  # one map per token
    caption = Caption(
        [red, BOS_ID, circle], -1.0, alphas, torch.log(torch.tensor([0.5, 0.1, 0.25]))
    )
    words, maps = words_and_maps(caption, tokenizer, (2, 3))
    assert words == ["red", "circle"]
    assert maps.shape == (2, 2, 3)
    assert (maps[1].ravel() == alphas[2].numpy()).all()  # circle keeps its own map


def ranked(caption: Caption) -> list[Caption]:
    return [caption, *caption.alternatives]


def test_n_best_are_distinct_sorted_and_start_with_the_plain_result(
    model: Captioner, features: torch.Tensor
) -> None:
    plain = beam_search(model, features, beam_size=4, max_len=7)
    for n in (2, 4):
        for alone, best in zip(plain, beam_search(model, features, 4, 7, 0.0, n), strict=True):
            captions = ranked(best)
            assert len(captions) == n
            assert len({tuple(c.tokens) for c in captions}) == n
            scores = [c.score for c in captions]
            assert scores == sorted(scores, reverse=True)
            assert best.tokens == alone.tokens and best.score == pytest.approx(alone.score)
            assert alone.alternatives == []


def test_batched_n_best_equals_one_image_at_a_time(
    model: Captioner, features: torch.Tensor
) -> None:
    batched = beam_search(model, features, beam_size=3, max_len=8, num_captions=3)
    for i, caption in enumerate(batched):
        alone = beam_search(model, features[i : i + 1], 3, 8, num_captions=3)[0]
        assert [c.tokens for c in ranked(caption)] == [c.tokens for c in ranked(alone)]
        assert [c.score for c in ranked(caption)] == pytest.approx([c.score for c in ranked(alone)])


def ranking_score(
    model: Captioner,
    feats: torch.Tensor,
    words: list[int],
    max_len: int,
    length_penalty: float,
    repeat_penalty: float,
) -> float:
    """What `DecodeOptions` ranks by, computed by teacher forcing."""
    logprobs, maps = teacher_forced(model, feats, words, max_len)
    repeats = looked_again(Caption(words, sum(logprobs), maps, torch.tensor(logprobs)))
    return sum(logprobs) / (len(words) + 1) ** length_penalty - repeat_penalty * repeats


@pytest.mark.parametrize(("length_penalty", "repeat_penalty"), [(0, 0), (1, 0), (0, 5), (1, 5)])
def test_wide_beam_finds_the_exhaustive_n_best(
    model: Captioner, features: torch.Tensor, length_penalty: float, repeat_penalty: float
) -> None:
    max_len, n, vocab = 3, 3, model.config.vocab_size
    words = [w for w in range(vocab) if w != EOS_ID]
    for i in range(3):
        feats = features[i]
        every = sorted(
            (
                (ranking_score(model, feats, list(seq), max_len, length_penalty, repeat_penalty),
                 list(seq))
                for n_words in range(max_len + 1)
                for seq in itertools.product(words, repeat=n_words)
            ),
            reverse=True,
        )  # fmt: skip
        found = beam_search(
            model,
            feats.unsqueeze(0),
            len(words) ** 2,
            max_len,
            length_penalty,
            num_captions=n,
            repeat_penalty=repeat_penalty,
        )
        assert [c.tokens for c in ranked(found[0])] == [seq for _, seq in every[:n]]


def test_looked_again_counts_a_word_said_again_where_it_looked_before() -> None:
    def repeats(tokens: list[int], cells: list[int]) -> float:
        alphas = torch.nn.functional.one_hot(torch.tensor(cells), 6).float()
        return looked_again(Caption(tokens, -1.0, alphas, torch.zeros(len(tokens))))

    assert repeats([5, 6, 5], [0, 1, 0]) == 1.0  # "star ... star", both at cell 0
    assert repeats([5, 6, 5], [0, 1, 2]) == 0.0  # two stars in two places
    assert repeats([5, 6, 7], [0, 0, 0]) == 0.0  # three words, one place: not a repeat
    assert repeats([5, 5, 5], [3, 3, 4]) == 1.0  # of three pairs, one looks at one place
    soft = torch.tensor([[0.5, 0.5, 0, 0, 0, 0], [0, 0.5, 0.5, 0, 0, 0]])
    assert looked_again(Caption([5, 5], -1.0, soft, torch.zeros(2))) == pytest.approx(0.25)


def test_the_repeat_penalty_changes_the_ranking_on_the_fixture(
    model: Captioner, features: torch.Tensor
) -> None:
    """Guards the exhaustive test's repeat_penalty cases against a fixture without repeats."""
    plain = beam_search(model, features, 4, 6, num_captions=4)
    penalised = decode_captions(model, features, DecodeOptions(4, 6, num_captions=4))
    assert any(looked_again(c) > 0.1 for best in plain for c in ranked(best))
    assert [c.tokens for c in plain] != [c.tokens for c in penalised]


@pytest.mark.parametrize("decode", ["greedy", "beam", "sample"])
def test_word_logprobs_are_the_models_and_sum_to_the_score(
    model: Captioner, features: torch.Tensor, decode: str
) -> None:
    max_len = 5
    gen = torch.Generator().manual_seed(3)
    captions = {
        "greedy": lambda: greedy(model, features, max_len),
        "beam": lambda: beam_search(model, features, 3, max_len, num_captions=3),
        "sample": lambda: sample(model, features, max_len, 0.7, gen, num_captions=2),
    }[decode]()
    cut = 0
    for feats, best in zip(features, captions, strict=True):
        for caption in ranked(best):
            steps = step_logprobs(model, feats, caption.tokens, max_len)
            assert caption.logprobs.tolist() == pytest.approx(
                steps[: len(caption.tokens)], abs=1e-4
            )
            p = caption.logprobs.exp()
            assert ((p > 0) & (p <= 1)).all()
            if len(caption.tokens) == max_len:  # cut: no <eos>, the words' p make the score
                cut += 1
                assert p.prod().item() == pytest.approx(math.exp(caption.score), rel=1e-4)
            else:  # the words' p and <eos>'s make the score
                assert caption.logprobs.sum().item() + steps[-1] == pytest.approx(caption.score)
    if decode == "greedy":
        assert cut > 0, "no greedy caption was cut: the product check did not run"


def test_word_probabilities_follow_the_spoken_words() -> None:
    tokenizer = build_tokenizer(["red circle"])
    red, circle = (tokenizer.convert_tokens_to_ids(w) for w in ("red", "circle"))
    logprobs = torch.log(torch.tensor([0.5, 0.1, 0.25]))
    caption = Caption([red, BOS_ID, circle], -1.0, torch.zeros(3, 6), logprobs)
    assert word_probabilities(caption, tokenizer).tolist() == pytest.approx([0.5, 0.25])


def tokens(captions: list[Caption]) -> list[list[int]]:
    return [c.tokens for c in captions]


@pytest.mark.parametrize(
    "options",
    [{"temperature": 1e-6}, {"top_k": 1, "temperature": 5.0}, {"top_p": 1e-6, "temperature": 5.0}],
    ids=["cold", "top_k=1", "top_p-tiny"],
)
def test_sampling_that_keeps_one_word_is_greedy(
    model: Captioner, features: torch.Tensor, options: dict
) -> None:
    options = {"temperature": 1.0} | options
    temperature = options.pop("temperature")
    gen = torch.Generator().manual_seed(0)
    got = sample(model, features, 6, temperature, gen, **options)
    assert tokens(got) == tokens(greedy(model, features, 6))


def test_sampling_draws_from_the_filtered_words(model: Captioner, features: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(1)
    hot = tokens(sample(model, features, 6, 3.0, gen))
    assert hot != tokens(greedy(model, features, 6))  # the filters above had work to do
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    kept = filtered_probs(logits, Sampling(top_k=2))[0]
    assert (kept[2:] == 0).all() and kept.sum().item() == pytest.approx(1.0)
    mass = logits.softmax(-1)[0]  # 0.61, 0.22, 0.14, 0.03: top_p 0.7 needs the first two
    nucleus = filtered_probs(logits, Sampling(top_p=0.7))[0]
    assert (nucleus[:2] == mass[:2]).all() and (nucleus[2:] == 0).all()
    assert draw(
        torch.tensor([[0.0, 0.5, 0.0, 0.5]] * 3), torch.tensor([0.0, 0.49, 0.99])
    ).tolist() == [1, 1, 3]


def test_seeded_samples_do_not_depend_on_batch_company(
    model: Captioner, features: torch.Tensor
) -> None:
    options = DecodeOptions(max_len=6, num_captions=3, sampling=Sampling(temperature=1.5))

    def seeded(rows: list[int], seeds: list[int]) -> list[list[list[int]]]:
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        captions = decode_captions(model, features[rows], options, gens)
        return [[c.tokens for c in ranked(caption)] for caption in captions]

    alone = seeded([2], [7])[0]
    assert seeded([2], [7])[0] == alone
    assert seeded([0, 2, 5], [1, 7, 9])[1] == alone
    assert seeded([4, 1, 3, 2], [7, 7, 8, 7])[3] == alone
    assert seeded([2], [8])[0] != alone  # another seed, other samples


def test_samples_are_ranked_by_score(model: Captioner, features: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(4)
    for caption in sample(model, features, 6, 1.5, gen, num_captions=4):
        scores = [c.score for c in ranked(caption)]
        assert len(scores) == 4 and scores == sorted(scores, reverse=True)


def test_options_that_mean_nothing_are_refused() -> None:
    with pytest.raises(ValueError, match="beam_size"):
        DecodeOptions(beam_size=2, num_captions=3)
    with pytest.raises(ValueError, match="length_penalty"):
        DecodeOptions(length_penalty=-0.5)
    with pytest.raises(ValueError, match="repeat_penalty"):
        DecodeOptions(repeat_penalty=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        Sampling(top_p=0.0)
    DecodeOptions(beam_size=1, num_captions=5, sampling=Sampling())  # five samples: fine
