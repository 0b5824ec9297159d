"""Decoding controls of POST /v1/captions over HTTP: sampling with seeds, several captions,
length and repeat penalties, each word's probability, and a 422 naming the field for every bad
value."""

import asyncio
import itertools
import math

import httpx
import numpy as np
import pytest

from api.app import create_app
from models.decoding import REPEAT_PENALTY


def upload(data: bytes) -> dict:
    return {"image": ("picture.png", data, "image/png")}


def caption(client: httpx.Client, data: bytes, **form: str) -> dict:
    response = client.post("/v1/captions", files=upload(data), data=form)
    assert response.status_code == 200, response.text
    return response.json()


def ranked(body: dict) -> list[dict]:
    return [body, *body["alternatives"]]


def repeats(caption: dict) -> float:
    """`models.decoding.looked_again` of a caption as the API returns it."""
    words = [t["word"] for t in caption["tokens"]]
    maps = [np.asarray(t["attention"]).ravel() for t in caption["tokens"]]
    return sum(
        float(maps[i] @ maps[j])
        for i in range(len(words))
        for j in range(i + 1, len(words))
        if words[i] == words[j]
    )


def is_ranked(keys: list[float]) -> bool:
    """Best first, up to the maps' 4 decimals."""
    return all(a >= b - 1e-3 for a, b in itertools.pairwise(keys))


@pytest.fixture(scope="module")
def strict(settings_for, serve_app):
    """Small bounds on the decoding fields."""
    settings = settings_for(
        beam_size=2,
        max_beam_size=4,
        max_num_captions=3,
        max_temperature=1.5,
        max_sample_top_k=5,
        max_length_penalty=1.0,
        max_repeat_penalty=10.0,
    )
    return serve_app(create_app(settings))


def test_every_word_has_its_probability(client, png) -> None:
    body = caption(client, png(), beam_size="1", max_length="4")
    assert body["alternatives"] == []
    ps = [token["p"] for token in body["tokens"]]
    assert len(ps) == len(body["caption"].split()) > 0
    assert all(0 < p <= 1 for p in ps)
    if len(ps) == 4:  # cut at max_length, no special token: the words' p make the score
        assert math.prod(ps) == pytest.approx(math.exp(body["score"]), rel=1e-2)


def test_n_best_are_distinct_sorted_and_start_with_the_plain_caption(client, png) -> None:
    data = png(seed=3)
    plain = caption(client, data, beam_size="3", max_length="6")
    body = caption(client, data, beam_size="3", max_length="6", num_captions="3")
    captions = ranked(body)
    assert len(captions) == 3 and len({c["caption"] for c in captions}) == 3
    assert is_ranked([c["score"] - REPEAT_PENALTY * repeats(c) for c in captions])
    assert body["caption"] == plain["caption"] and body["score"] == plain["score"]
    for other in body["alternatives"]:
        assert other["caption"] == " ".join(t["word"] for t in other["tokens"])
        assert all(0 < t["p"] <= 1 and len(t["attention"]) == 4 for t in other["tokens"])


def test_length_penalty_reaches_the_ranking(client, png) -> None:
    form = {"beam_size": "4", "num_captions": "4", "repeat_penalty": "0"}
    body = caption(client, png(seed=4), length_penalty="1.0", **form)
    normalised = [c["score"] / (len(c["tokens"]) + 1) for c in ranked(body)]
    assert normalised == sorted(normalised, reverse=True)


def test_repeat_penalty_reaches_the_ranking(client, png) -> None:
    form = {"beam_size": "4", "num_captions": "4", "max_length": "8"}
    plain = ranked(caption(client, png(seed=4), repeat_penalty="0", **form))
    assert [c["score"] for c in plain] == sorted((c["score"] for c in plain), reverse=True)
    assert max(repeats(c) for c in plain) > 0  # something for the penalty to weigh
    strong = ranked(caption(client, png(seed=4), repeat_penalty="40", **form))
    assert is_ranked([c["score"] - 40 * repeats(c) for c in strong])


@pytest.mark.parametrize(
    "form",
    [{"temperature": "0.000001"}, {"top_k": "1"}, {"top_p": "0.000001"}],
    ids=["cold", "top_k=1", "top_p-tiny"],
)
def test_sampling_that_keeps_one_word_is_greedy(client, png, form) -> None:
    data = png(seed=5)
    greedy = caption(client, data, beam_size="1", max_length="6")
    sampled = caption(client, data, sample="true", seed="1", max_length="6", **form)
    assert sampled["caption"] == greedy["caption"]


def test_a_seed_gives_the_same_captions_even_in_a_batch(
    server, read_metrics, png, while_busy
) -> None:
    """Requests of other seeds batched with a seeded one leave its captions unchanged."""
    data = png(seed=6)
    form = {"sample": "true", "seed": "42", "num_captions": "3", "max_length": "8"}
    with server.client() as client:
        alone = [c["caption"] for c in ranked(caption(client, data, **form))]
        again = [c["caption"] for c in ranked(caption(client, data, **form))]
    assert again == alone

    async def burst(client: httpx.AsyncClient) -> list[httpx.Response]:
        seeds = ["1", "42", "7", "42", "99"]
        sent = [
            client.post("/v1/captions", files=upload(data), data=form | {"seed": s}) for s in seeds
        ]
        return await asyncio.gather(*sent)

    def shared_passes() -> float:
        """Caption passes so far that decoded more than one request."""
        with server.client() as client:
            metrics = read_metrics(client)
        count = metrics.value("glimpse_batch_size_count", task="caption")
        return count - metrics.value("glimpse_batch_size_bucket", task="caption", le="1.0")

    before = shared_passes()
    responses = asyncio.run(while_busy(server.url, burst))
    assert shared_passes() > before  # some of them were sampled together
    assert [r.status_code for r in responses] == [200] * 5
    texts = [[c["caption"] for c in ranked(r.json())] for r in responses]
    assert texts[1] == texts[3] == alone
    assert len({tuple(t) for t in texts}) > 1  # other seeds, other samples


def test_overlay_takes_the_decoding_fields(client, png) -> None:
    form = {"sample": "true", "seed": "3", "top_k": "3"}
    response = client.post("/v1/captions/overlay", files=upload(png()), data=form)
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("form", "field", "words"),
    [
        ({"sample": "maybe"}, "sample", "boolean"),
        ({"sample": "true", "temperature": "0"}, "temperature", "above 0"),
        ({"sample": "true", "temperature": "1.6"}, "temperature", "at most 1.5"),
        ({"sample": "true", "temperature": "nan"}, "temperature", "above 0"),
        ({"sample": "true", "temperature": "hot"}, "temperature", "number"),
        ({"temperature": "0.5"}, "temperature", "only when sample=true"),
        ({"sample": "true", "top_k": "0"}, "top_k", "between 1 and 5"),
        ({"sample": "true", "top_k": "6"}, "top_k", "between 1 and 5"),
        ({"top_k": "2"}, "top_k", "only when sample=true"),
        ({"sample": "true", "top_p": "0"}, "top_p", "above 0"),
        ({"sample": "true", "top_p": "1.01"}, "top_p", "at most 1"),
        ({"top_p": "0.9"}, "top_p", "only when sample=true"),
        ({"sample": "true", "seed": "-1"}, "seed", "between 0 and"),
        ({"sample": "true", "seed": str(2**63)}, "seed", "between 0 and"),
        ({"sample": "true", "seed": "1.5"}, "seed", "integer"),
        ({"seed": "3"}, "seed", "only when sample=true"),
        ({"sample": "true", "beam_size": "2"}, "beam_size", "does not apply"),
        ({"num_captions": "0"}, "num_captions", "between 1 and 3"),
        ({"num_captions": "4", "sample": "true"}, "num_captions", "between 1 and 3"),
        ({"num_captions": "3"}, "num_captions", "must not exceed beam_size (2)"),
        ({"length_penalty": "-0.1"}, "length_penalty", "between 0 and 1.0"),
        ({"length_penalty": "1.5"}, "length_penalty", "between 0 and 1.0"),
        ({"length_penalty": "0.5", "beam_size": "1"}, "length_penalty", "ranks candidates"),
        ({"length_penalty": "0.5", "sample": "true"}, "length_penalty", "ranks candidates"),
        ({"repeat_penalty": "-1"}, "repeat_penalty", "between 0 and 10.0"),
        ({"repeat_penalty": "11"}, "repeat_penalty", "between 0 and 10.0"),
        ({"repeat_penalty": "many"}, "repeat_penalty", "number"),
        ({"repeat_penalty": "2", "beam_size": "1"}, "repeat_penalty", "ranks candidates"),
    ],
)
def test_bad_decoding_fields_are_422_naming_the_field(strict, png, form, field, words) -> None:
    with strict.client() as client:
        response = client.post("/v1/captions", files=upload(png()), data=form)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_field" and error["field"] == field
        assert words in error["message"], error["message"]
        assert caption(client, png(), max_length="3")["tokens"]  # still serving


def test_the_overlay_draws_one_caption(strict, png) -> None:
    with strict.client() as client:
        form = {"num_captions": "2"}
        response = client.post("/v1/captions/overlay", files=upload(png()), data=form)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "num_captions"


def test_bounds_are_settings(client, strict, png) -> None:
    """What the strict server refuses, a server with the default bounds accepts."""
    form = {"sample": "true", "temperature": "1.6", "top_k": "6", "num_captions": "4"}
    assert len(ranked(caption(client, png(), **form))) == 4
    with strict.client() as strict_client:
        response = strict_client.post("/v1/captions", files=upload(png()), data=form)
    assert response.status_code == 422
