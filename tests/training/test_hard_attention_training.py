"""Training hard attention: the REINFORCE estimator of the location choices, its baseline, the
expected-context branch, and both training regimes end to end on the tiny world."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from factories import tiny_captioner_config
from models.captioner import Captioner
from tiny_runs import TINY, headless
from training.config import TrainConfig, load_config
from training.hard_attention import HardAttentionLoss, MovingBaseline, SampledLocations

CPU = torch.device("cpu")
HARD_TINY = [
    *(a for a in TINY if not a.startswith("model=")),
    'model={"d_model": 16, "embed_dim": 16, "hidden_dim": 32, "attn_dim": 8, "dropout": 0.3,'
    ' "attention": "hard"}',
]

# The toy: one choice among 5 cells with logits THETA, rewarded REWARD[s]. The objective
# J = sum_s p_s REWARD[s] has the gradient p * (REWARD - J) in the logits.
THETA = torch.tensor([0.2, -0.5, 1.0, 0.0, -1.0])
REWARD = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0])


def true_gradient() -> torch.Tensor:
    p = THETA.softmax(0)
    return p * (REWARD - (p * REWARD).sum())


def per_sample_gradients(
    samples: int, offset: float, baseline: float, generator: torch.Generator
) -> torch.Tensor:
    """The estimator's gradient of J (samples, 5) for one sampled cell each: the training
    policy samples, and its REINFORCE term (whose mean over rows is the loss) is
    differentiated, each sample in its own copy of the logits."""
    theta = THETA.repeat(samples, 1).requires_grad_()  # (R, L)
    alpha = theta.softmax(-1)
    policy = SampledLocations(samples, expected=0.0, device=CPU, generator=generator)
    cells = policy(alpha).cells  # (R,)
    rewards = (REWARD[cells] + offset).unsqueeze(1)  # (R, 1)
    mask = torch.ones(samples, 1, dtype=torch.bool)
    loss = policy.terms(
        alpha.unsqueeze(1), mask, rewards, torch.full_like(rewards, baseline), 1.0, 0.0
    )
    loss.backward()
    assert theta.grad is not None
    return -theta.grad * samples  # the loss is minus the mean estimate


def test_the_reinforce_estimator_is_unbiased() -> None:
    generator = torch.Generator().manual_seed(0)
    for baseline in (0.0, 1.5):  # any constant baseline leaves the mean alone
        grads = per_sample_gradients(20_000, 0.0, baseline, generator)
        standard_error = grads.std(dim=0) / grads.size(0) ** 0.5
        assert (grads.mean(dim=0) - true_gradient()).abs().le(4 * standard_error).all()


def test_the_moving_average_baseline_lowers_the_estimators_variance() -> None:
    """Rewards far from zero (log-likelihoods are): the baseline learns their level from the
    batches before and removes it, which the raw estimator carries as noise."""
    generator, offset = torch.Generator().manual_seed(1), -20.0
    baseline = MovingBaseline(decay=0.9)
    value = baseline.next(offset)  # the first batch: its own mean
    for _ in range(30):  # batches of 256 samples: their mean reward updates the baseline
        cells = torch.multinomial(THETA.softmax(0), 256, replacement=True, generator=generator)
        value = baseline.next(float(REWARD[cells].mean() + offset))
    without = per_sample_gradients(5_000, offset, 0.0, generator).var(dim=0).sum()
    with_baseline = per_sample_gradients(5_000, offset, value, generator).var(dim=0).sum()
    assert with_baseline < 0.05 * without


def test_the_moving_baseline_measures_each_batch_against_the_ones_before() -> None:
    baseline = MovingBaseline(decay=0.9)
    assert baseline.next(-4.0) == -4.0  # nothing before: the batch's own mean
    assert baseline.next(-2.0) == -4.0  # b_1 = -4 still, then b_2 = 0.9 b_1 + 0.1 (-2)
    assert baseline.next(0.0) == pytest.approx(0.9 * -4.0 + 0.1 * -2.0)


def test_with_the_expected_context_forced_on_the_word_loss_is_the_soft_models() -> None:
    torch.manual_seed(0)
    soft = Captioner(tiny_captioner_config(16, 10, (2, 3), dropout=0.0))
    hard = Captioner(replace(soft.config, attention="hard"))
    hard.load_state_dict(soft.state_dict())
    features = torch.randn(3, 6, 10)
    captions = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0], [1, 10, 11, 12, 2]])
    words, targets = captions[:, :-1], captions[:, 1:]
    soft_logits, _, soft_loss = soft(features, words, targets)
    cfg = TrainConfig(hard_expected_context=1.0, model={"attention": "hard"})

    always = SampledLocations(3, cfg.hard_expected_context, CPU)
    with hard.locating(always):
        logits, alphas, loss = hard(features, words, targets)
    assert torch.equal(logits, soft_logits) and torch.equal(loss, soft_loss)
    assert HardAttentionLoss(cfg)(always, logits, alphas, targets) == 0  # nothing sampled

    never = SampledLocations(3, 0.0, CPU)  # the guard: sampled locations change the words
    with hard.locating(never):
        sampled_logits, alphas, _ = hard(features, words, targets)
    assert not torch.allclose(sampled_logits, soft_logits)
    terms = HardAttentionLoss(cfg)(never, sampled_logits, alphas, targets)
    terms.backward()
    assert hard.attention.score.weight.grad is not None  # the locations train the attention
    assert hard.attention.score.weight.grad.abs().sum() > 0


def test_the_expected_context_is_chosen_per_caption_at_the_recipes_rate() -> None:
    policy = SampledLocations(20_000, 0.5, CPU, torch.Generator().manual_seed(2))
    alpha = torch.full((20_000, 6), 1 / 6)
    first, second = policy(alpha), policy(alpha)
    assert first.expected is second.expected  # one decision per caption, for all its steps
    assert first.expected is not None
    share = first.expected.float().mean().item()
    assert abs(share - 0.5) < 4 * (0.25 / 20_000) ** 0.5
    assert not torch.equal(first.cells, second.cells)  # a new location at every step


def test_hard_attention_settings_need_a_hard_model_and_sensible_values() -> None:
    with pytest.raises(ValueError, match="settings of hard attention"):
        load_config("shapes-cpu", ["hard_entropy=0.01"])
    load_config("shapes-cpu", ['model={"attention": "hard"}', "hard_entropy=0.01"])
    for bad in ("hard_reinforce=-1", "hard_baseline_decay=1", "hard_expected_context=1.5"):
        with pytest.raises(ValueError, match="hard_"):
            load_config("shapes-cpu", ['model={"attention": "hard"}', bad])
    with pytest.raises(ValueError, match="caption training only"):
        load_config("vqa-shapes", ["hard_reinforce=2"])


def test_a_hard_model_trains_by_teacher_forcing_then_self_critically(
    tiny_world: Path, tmp_path: Path
) -> None:
    from models.checkpoint import load_pretrained
    from training.captions_self_critical import SelfCriticalTask
    from training.captions_teacher_forcing import TeacherForcingTask
    from training.loop import fit

    cfg = load_config("shapes-cpu", [*HARD_TINY, "epochs=1", "scheduled_sampling=0.5"])
    task = TeacherForcingTask(cfg, tiny_world)
    batch = task.batches(0)[0]
    torch.manual_seed(0)
    task.loss(task.model, batch, CPU).backward()
    assert task.head.attention.score.weight.grad is not None
    assert task.hard_attention.baseline.value is not None  # the baseline has seen a batch
    torch.manual_seed(0)
    fit(task, cfg, tmp_path / "tf")
    exported = load_pretrained(tmp_path / "tf" / "model")
    assert isinstance(exported.model, Captioner) and exported.model.config.attention == "hard"

    init = f"init_from={tmp_path / 'tf' / 'model'}"
    scst = load_config("shapes-scst", headless(init, "epochs=1", "batch_size=4"))
    result = fit(SelfCriticalTask(scst, tiny_world), scst, tmp_path / "scst")
    assert 0 <= result.best_metrics["correct"] <= 1
    tuned = load_pretrained(tmp_path / "scst" / "model").model
    assert isinstance(tuned, Captioner) and tuned.config.attention == "hard"


def test_self_critical_training_adds_the_location_terms_to_a_hard_models_loss(
    tiny_world: Path, teacher_forced: Path, tmp_path: Path
) -> None:
    """The same samples (same seed) scored with and without each location term: sampled
    cells pass no gradient to the attention, so only the REINFORCE and entropy terms train it."""
    import math

    from models.checkpoint import load_pretrained, save_pretrained
    from training.captions_self_critical import SelfCriticalTask

    start = load_pretrained(teacher_forced)
    assert isinstance(start.model, Captioner)
    hard_model = Captioner(replace(start.model.config, attention="hard"))
    hard_model.load_state_dict(start.model.state_dict())
    save_pretrained(tmp_path / "hard", replace(start, model=hard_model))

    overrides = [f"init_from={tmp_path / 'hard'}", "batch_size=4", "hard_expected_context=0"]
    overrides += ['reward={"cider_d": 1.0}']  # varies between samples, unlike truth here
    task = SelfCriticalTask(load_config("shapes-scst", headless(*overrides)), tiny_world)
    batch, settings = task.batches(0)[0], task.cfg

    def loss(reinforce: float, entropy: float) -> tuple[float, float]:
        """The loss, and the size of the attention's gradient."""
        task.cfg = replace(settings, hard_reinforce=reinforce, hard_entropy=entropy)
        task.head.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        value = task.loss(task.model.eval(), batch, CPU)
        value.backward()
        grad = task.head.attention.score.weight.grad
        return value.item(), 0.0 if grad is None else grad.abs().sum().item()

    words_only, untrained = loss(0.0, 0.0)
    assert untrained == 0.0
    with_reinforce, trained = loss(1.0, 0.0)
    assert trained > 0.0
    assert with_reinforce == pytest.approx(words_only)  # worth 0: the log shows the words' loss
    mean_entropy = (words_only - loss(0.0, 5.0)[0]) / 5.0
    cells = hard_model.config.grid[0] * hard_model.config.grid[1]
    assert 0.0 < mean_entropy <= math.log(cells) + 1e-6
