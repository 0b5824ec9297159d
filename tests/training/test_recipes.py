"""Recipes and their overrides, and the task each recipe trains."""

from pathlib import Path

import pytest

from tiny_runs import TINY, headless
from training.config import load_config


def test_recipes_load_and_overrides_are_checked() -> None:
    recipes = ("shapes-cpu", "vqa-shapes", "coco-gpu", "vqa-coco-gpu")
    for recipe in (*recipes, "shapes-scst", "shapes-scst-cider", "coco-scst"):
        assert load_config(recipe).epochs > 0
    assert load_config("shapes-scst").reward == {"truth": 1.0}  # the bundled model's reward
    coco = load_config("coco-scst")
    assert (coco.reward, coco.baseline, coco.init_from) == (
        {"cider_d": 1.0},
        "greedy",
        "runs/coco/model",
    )
    assert load_config("shapes-scst-cider").reward == {"cider_d": 1.0}
    cfg = load_config("shapes-cpu", ["lr=0.01", "fine_tune=true", "encoder=tiny"])
    assert (cfg.lr, cfg.fine_tune, cfg.encoder) == (0.01, True, "tiny")
    with pytest.raises(ValueError, match="unknown config keys"):
        load_config("shapes-cpu", ["learning_rate=1"])
    with pytest.raises(ValueError, match="no recipe"):
        load_config("imagenet")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (['reward={"cider": 1}'], "unknown rewards"),
        (['reward={"cider_d": 0}'], "above 0"),
        (['reward={"truth": true}'], "must be a number"),
        (['reward={"cider_d": "1"}'], "must be a number"),
        (["reward={}"], "dict of reward names"),
        (["reward=cider_d"], "dict of reward names"),
        (["baseline=beam"], "baseline must be one of"),
        (["baseline=mean", "self_critical_samples=1"], "sample 2 or more"),
        (["max_minutes=-1"], "max_minutes"),
    ],
)
def test_bad_reward_baseline_and_budget_settings_are_refused(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_config("shapes-scst", overrides)
    load_config("shapes-scst", ["baseline=greedy", "self_critical_samples=1", "max_minutes=0.5"])


def test_rewards_are_settings_of_self_critical_training_only() -> None:
    with pytest.raises(ValueError, match="reward: settings of self-critical"):
        load_config("shapes-cpu", ['reward={"cider_d": 1}'])
    with pytest.raises(ValueError, match="baseline: settings of self-critical"):
        load_config("vqa-shapes", ["baseline=greedy"])


def test_caption_settings_are_refused_for_vqa() -> None:
    with pytest.raises(ValueError, match="self_critical_samples"):
        load_config("vqa-shapes", ["self_critical_samples=5"])


def test_each_recipe_trains_its_own_task(tiny_world: Path, teacher_forced: Path) -> None:
    from training.captions_self_critical import SelfCriticalTask
    from training.captions_teacher_forcing import TeacherForcingTask
    from training.tasks import build_task
    from training.vqa import VQATask

    vqa = headless('model={"d_model": 16, "question_dim": 16, "classifier_dim": 16}')
    recipes = {
        "shapes-cpu": (TINY, TeacherForcingTask),
        "shapes-scst": (headless(f"init_from={teacher_forced}"), SelfCriticalTask),
        "shapes-scst-cider": (headless(f"init_from={teacher_forced}"), SelfCriticalTask),
        "vqa-shapes": (vqa, VQATask),
    }
    for recipe, (overrides, kind) in recipes.items():
        assert type(build_task(load_config(recipe, overrides), tiny_world)) is kind, recipe
