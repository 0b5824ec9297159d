"""The rewards self-critical training mixes, scored on the tiny world's training captions."""

from pathlib import Path

import pytest

from models.text import words
from training.config import REWARDS
from training.data.coco import load_caption_split
from training.rewards import build_reward


def test_each_reward_scores_a_reference_above_a_wrong_caption(tiny_world: Path) -> None:
    train = load_caption_split(tiny_world, "train")
    first, second = train[0], train[1]
    image_ids = [first.image_id] * 3
    captions = [words(first.captions[0]), words(second.captions[0]), []]
    scores = {
        name: build_reward({name: 1.0}, tiny_world, train)(image_ids, captions) for name in REWARDS
    }
    assert scores["truth"] == [1.0, 0.0, 0.0]  # every reference is true and complete
    assert scores["bleu4"][0] == pytest.approx(1.0) and scores["bleu4"][2] == pytest.approx(0.0)
    assert scores["cider_d"][0] > scores["cider_d"][1] > 0.0 == scores["cider_d"][2]

    mixed = build_reward({"cider_d": 0.5, "truth": 2.0}, tiny_world, train)(image_ids, captions)
    expected = [0.5 * c + 2.0 * t for c, t in zip(scores["cider_d"], scores["truth"], strict=True)]
    assert mixed == pytest.approx(expected)
    with pytest.raises(ValueError, match="3 captions for 2 image ids"):
        build_reward({"truth": 1.0}, tiny_world, train)(image_ids[:2], captions)


def test_the_truth_reward_needs_the_worlds_objects(tmp_path: Path, tiny_world: Path) -> None:
    train = load_caption_split(tiny_world, "train")
    with pytest.raises(ValueError, match="truth reward.*instances_train.json"):
        build_reward({"truth": 1.0}, tmp_path, train)
    assert build_reward({"bleu4": 1.0}, tmp_path, train)  # the others need captions only
