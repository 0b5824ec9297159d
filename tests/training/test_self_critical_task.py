"""The self-critical task: it goes on training an exported captioner on sampled captions
(the sampler and the loss it uses are tested in test_self_critical)."""

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from tiny_runs import headless
from training.captions_self_critical import SelfCriticalTask
from training.config import load_config

CPU = torch.device("cpu")


def test_self_critical_run_fine_tunes_an_exported_model(
    tiny_world: Path, teacher_forced: Path, tmp_path: Path
) -> None:
    from models.checkpoint import load_pretrained
    from training.loop import fit

    start = load_pretrained(teacher_forced)
    cfg = load_config(
        "shapes-scst", headless(f"init_from={teacher_forced}", "epochs=1", "batch_size=4")
    )
    task = SelfCriticalTask(cfg, tiny_world)
    assert task.tokenizer.get_vocab() == start.tokenizer.get_vocab()
    initial = task.model.state_dict()
    for name, value in start.model.state_dict().items():
        assert torch.equal(initial[name], value.float()), name
    batch = task.batches(0)[0]
    assert max(batch) < len(task.train_set.records)  # batches of images, not of captions
    loss = task.loss(task.model, batch, CPU)
    loss.backward()
    result = fit(task, cfg, tmp_path)
    assert result.best_metrics["score"] == result.best_metrics["correct"]
    tuned = load_pretrained(tmp_path / "model")  # exported with the starting model's head
    assert asdict(tuned.model.config) == asdict(start.model.config)


def test_self_critical_with_attention_supervision_targets_the_sampled_phrases(
    tiny_world: Path, teacher_forced: Path
) -> None:
    overrides = [f"init_from={teacher_forced}", "batch_size=4"]
    plain = SelfCriticalTask(load_config("shapes-scst", headless(*overrides)), tiny_world)
    supervised = SelfCriticalTask(
        load_config("shapes-scst", headless(*overrides, "attention_supervision=1")), tiny_world
    )
    batch = plain.batches(0)[0]
    torch.manual_seed(0)
    without = plain.loss(plain.model.eval(), batch, CPU)
    torch.manual_seed(0)
    with_supervision = supervised.loss(supervised.model.eval(), batch, CPU)
    assert with_supervision > without  # -log(mass) > 0 wherever a sample names an object


def test_a_mixed_reward_with_a_greedy_baseline_keeps_the_epoch_best_by_the_same_mix(
    tiny_world: Path, teacher_forced: Path, tmp_path: Path
) -> None:
    from models.decoding import greedy
    from models.text import decode
    from training.loop import fit

    mix = 'reward={"cider_d": 0.5, "truth": 2.0}'
    overrides = [f"init_from={teacher_forced}", mix, "baseline=greedy", "epochs=1", "batch_size=4"]
    cfg = load_config("shapes-scst", headless(*overrides))
    task = SelfCriticalTask(cfg, tiny_world)
    records = task.train_set.records[:3]
    ids = [r.image_id for r in records]
    grids = task.train_set.source.many(ids, [r.path for r in records])
    head = task.head.train()
    baseline = task.greedy_rewards(head, grids, ids, CPU)
    assert head.training  # decoded in eval mode, then put back
    captions = [
        decode(task.tokenizer, c.tokens) for c in greedy(head.eval(), grids, cfg.max_caption_len)
    ]
    assert baseline.tolist() == pytest.approx(task.reward(ids, captions))
    result = fit(task, cfg, tmp_path)
    best = result.best_metrics
    assert best["score"] == pytest.approx(0.5 * best["CIDEr"] + 2.0 * best["correct"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (['model={"d_model": 16}'], "word_query, coverage only, not d_model"),
        (["image_size=32"], "trained on encoder"),
        (["fine_tune=true"], "fine_tune=false"),
    ],
)
def test_self_critical_settings_that_cannot_work_are_clear_errors(
    tiny_world: Path, teacher_forced: Path, overrides: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):  # from the recipe or from the model
        SelfCriticalTask(
            load_config("shapes-scst", headless(f"init_from={teacher_forced}", *overrides)),
            tiny_world,
        )


def informative_task(world: Path, start: Path, *overrides: str) -> SelfCriticalTask:
    settings = [f"init_from={start}", "batch_size=4", "informative_share=0.5", *overrides]
    return SelfCriticalTask(load_config("shapes-scst", headless(*settings)), world)


def test_informative_share_draws_the_images_whose_samples_disagreed(
    tiny_world: Path, teacher_forced: Path
) -> None:
    task = informative_task(tiny_world, teacher_forced)
    plain = SelfCriticalTask(
        load_config("shapes-scst", headless(f"init_from={teacher_forced}", "batch_size=4")),
        tiny_world,
    )
    batches = task.batches(0)
    assert len(batches) == len(plain.batches(0))  # as many steps an epoch
    assert {len(b) for b in batches} == {2}  # the other half is drawn by `loss`
    uniform = batches[0]
    taught = next(i for i in range(len(task.spread)) if i not in uniform)
    task.spread = torch.full_like(task.spread, 7.0)  # no reward spreads this far: untouched
    task.spread[taught] = 1e6
    torch.manual_seed(0)
    task.loss(task.model, uniform, CPU)
    assert task.spread[taught] <= 0.5  # drawn, and given the spread of its 5 rewards
    assert all(task.spread[i] <= 0.5 for i in uniform)
    assert (task.spread != 7.0).sum() in (3, 4)  # 2 uniform + 2 informative (one is `taught`)


def test_the_record_of_which_images_teach_is_resumed(
    tiny_world: Path, teacher_forced: Path, tmp_path: Path
) -> None:
    from training.loop import STATE_FILE, fit, start

    task = informative_task(tiny_world, teacher_forced, "epochs=1")
    task.spread = torch.full_like(task.spread, 7.0)  # no reward spreads this far
    fit(task, task.cfg, tmp_path)
    assert (task.spread <= 0.5).any()  # images were drawn and scored
    resumed = informative_task(tiny_world, teacher_forced, "epochs=1")
    start(resumed, resumed.cfg, tmp_path / STATE_FILE, resume=True)
    assert torch.equal(resumed.spread, task.spread)


@pytest.mark.parametrize(
    ("recipe", "overrides", "message"),
    [
        ("shapes-scst", ["informative_share=1.0"], "informative_share"),
        ("shapes-scst", ["informative_share=-0.1"], "informative_share"),
        ("shapes-scst", ["batch_size=2", "informative_share=0.75"], "no image"),
        ("shapes-cpu", ["informative_share=0.5"], "self-critical"),
    ],
)
def test_informative_share_out_of_reach_is_a_clear_error(
    recipe: str, overrides: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(recipe, overrides)


def test_init_from_can_switch_on_the_word_query_and_coverage_and_nothing_else(
    tiny_world: Path, teacher_forced: Path
) -> None:
    from models.checkpoint import load_pretrained
    from training.captions import grown

    start = load_pretrained(teacher_forced).model
    overrides = [f"init_from={teacher_forced}", "batch_size=4"]
    wanted = 'model={"word_query": true, "coverage": true}'
    task = SelfCriticalTask(load_config("shapes-scst", headless(*overrides, wanted)), tiny_world)
    assert task.head.config.word_query and task.head.config.coverage
    tuned = task.head.state_dict()
    for name, value in start.state_dict().items():
        assert torch.equal(tuned[name], value.float()), name  # trained weights kept
    assert not tuned["attention.word_proj.weight"].any()  # the new W_e starts at zero
    assert not tuned["attention.coverage_weight"].any()  # and so does w_c
    with pytest.raises(ValueError, match="word_query, coverage only, not hidden_dim"):
        SelfCriticalTask(
            load_config("shapes-scst", headless(*overrides, 'model={"hidden_dim": 8}')),
            tiny_world,
        )
    with pytest.raises(ValueError, match="would drop trained weights"):
        grown(task.head, {"word_query": False})
