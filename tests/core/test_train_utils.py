"""The shared training step: non-finite steps are skipped, a run that keeps skipping ends."""

import math

import pytest
import torch
from torch import nn

from n3seq._train_utils import (
    MAX_SKIPPED_IN_A_ROW,
    DivergenceGuard,
    adam_one_cycle,
    optimizer_step,
)


def _setup(steps: int = 40):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt, sched = adam_one_cycle(model, 1e-2, steps)
    return model, opt, sched


def test_a_finite_step_updates_the_weights_and_returns_the_loss():
    model, opt, sched = _setup()
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.ones(4, 3)).square().mean()
    assert optimizer_step(loss, model, opt, sched) == pytest.approx(loss.item())
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_a_non_finite_step_is_skipped(kind):
    model, opt, sched = _setup()
    optimizer_step(model(torch.ones(4, 3)).square().mean(), model, opt, sched)  # Adam state
    weights = [p.detach().clone() for p in model.parameters()]
    moments = {k: v.clone() for k, v in opt.state[model.weight].items()}
    lr = opt.param_groups[0]["lr"]
    out = model(torch.ones(4, 3))
    # "gradient": a finite loss (0) whose gradient is NaN (sqrt's infinite slope at 0, times 0)
    loss = out.square().mean() * float("nan") if kind == "loss" else (out * 0).sqrt().sum()
    assert math.isnan(optimizer_step(loss, model, opt, sched))
    assert all(torch.equal(a, p) for a, p in zip(weights, model.parameters(), strict=True))
    for key, value in opt.state[model.weight].items():
        assert torch.equal(value, moments[key]), key
    assert opt.param_groups[0]["lr"] != lr  # the schedule still advanced
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


@pytest.mark.parametrize("max_norm", [0.5, 0.0, -1.0])
def test_the_gradient_is_clipped_to_max_grad_norm_and_not_clipped_when_it_is_not_positive(
        max_norm):
    model, opt, _ = _setup()
    seen = []
    opt.step = lambda: seen.append(
        float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))))
    model(torch.ones(4, 3)).sub(1e3).square().mean().backward()
    raw = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))
    assert raw > 1
    loss = model(torch.ones(4, 3)).sub(1e3).square().mean()
    optimizer_step(loss, model, opt, None, max_grad_norm=max_norm)
    assert seen == [pytest.approx(max_norm if max_norm > 0 else raw, rel=1e-4)]


def test_divergence_guard_ends_a_run_only_after_enough_skips_in_a_row():
    nan = float("nan")
    guard = DivergenceGuard("try X", skipped=3)
    values = [1.0] + [nan] * (MAX_SKIPPED_IN_A_ROW - 1) + [1.0] + [nan] * (MAX_SKIPPED_IN_A_ROW - 1)
    for step, value in enumerate(values, 1):
        guard.update(value, step)
    assert guard.skipped == 3 + 2 * (MAX_SKIPPED_IN_A_ROW - 1)
    last = len(values) + 1
    with pytest.raises(FloatingPointError, match=f"not finite in {MAX_SKIPPED_IN_A_ROW} steps in "
                       f"a row \\(steps {last - MAX_SKIPPED_IN_A_ROW + 1}-{last}\\).*try X"):
        guard.update(nan, last)


def test_fit_on_episodes_ends_a_diverged_run_with_finite_weights():
    from n3seq.timeseries import SeriesModel, fit_on_episodes, make_episode

    model = SeriesModel(1, window=4, stride=2, width=8, k=2)
    ep = make_episode(torch.randn(4, 40, 1), torch.full((4,), 40), "denoise", noise=0.1,
                      generator=torch.Generator().manual_seed(0))
    ep["target"] = ep["target"] * float("nan")  # every loss is NaN
    with pytest.raises(FloatingPointError, match="steps in a row"):
        fit_on_episodes(model, ep, steps=30, batch=2)
    assert all(torch.isfinite(p).all() for p in model.parameters())
