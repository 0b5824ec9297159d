"""Recipes and their overrides, and the task each recipe trains."""

from pathlib import Path

import pytest

from tiny_runs import TINY, headless
from training.config import load_config


def test_recipes_load_and_overrides_are_checked() -> None:
    for recipe in ("shapes-cpu", "shapes-scst", "vqa-shapes", "coco-gpu", "vqa-coco-gpu"):
        assert load_config(recipe).epochs > 0
    cfg = load_config("shapes-cpu", ["lr=0.01", "fine_tune=true", "encoder=tiny"])
    assert (cfg.lr, cfg.fine_tune, cfg.encoder) == (0.01, True, "tiny")
    with pytest.raises(ValueError, match="unknown config keys"):
        load_config("shapes-cpu", ["learning_rate=1"])
    with pytest.raises(ValueError, match="no recipe"):
        load_config("imagenet")


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
        "vqa-shapes": (vqa, VQATask),
    }
    for recipe, (overrides, kind) in recipes.items():
        assert type(build_task(load_config(recipe, overrides), tiny_world)) is kind, recipe
