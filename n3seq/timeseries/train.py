"""A short, seeded training loop for :class:`~n3seq.timeseries.SeriesModel`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from n3seq._train_utils import (
    DivergenceGuard,
    adam_one_cycle,
    optimizer_step,
    progress_range,
)
from n3seq.timeseries.metrics import masked_mse
from n3seq.timeseries.tasks import check_task, make_episode, random_crops


def fit_series_model(model: nn.Module, train: np.ndarray, task: str, *, steps: int = 500,
                     batch: int = 16, min_len: int = 64, max_len: int = 128, lr: float = 2e-3,
                     seed: int = 0, progress: bool = False, **episode_kwargs: Any) -> list[float]:
    """Trains ``model`` on random crops of ``train`` for one task (Adam, one-cycle schedule).

    Each step draws ``batch`` crops of random length (a padded batch), corrupts them as
    ``task`` asks (see :func:`~n3seq.timeseries.make_episode`) and minimises the MSE on the
    scored points.

    Args:
        model: maps ``(series, observed, mask)`` to the clean series.
        train: training series ``(T, C)`` (standardised).
        task: ``"denoise"``, ``"impute"`` or ``"forecast"``.
        steps: optimiser steps (one-cycle learning rate with 10 % warm-up from 20 steps on,
            a constant ``lr`` below).
        batch: crops per step.
        min_len: shortest crop.
        max_len: longest crop (the padded length).
        lr: peak learning rate.
        seed: seeds the crops and corruptions (not the model's initialisation).
        progress: show a tqdm bar.
        **episode_kwargs: ``noise``, ``horizon``, ``gap``, ``num_gaps``.

    Returns:
        The training loss of every step (NaN for a step skipped as non-finite).
    """
    check_task(task)
    gen = torch.Generator().manual_seed(seed)
    opt, sched = adam_one_cycle(model, lr, steps)
    losses, guard = [], DivergenceGuard()
    model.train()
    for _ in progress_range(steps, progress, f"train {task}"):
        crops, lengths = random_crops(train, batch, min_len, max_len, gen)
        ep = make_episode(crops, lengths, task, generator=gen, **episode_kwargs)
        pred = model(ep["inputs"], ep["observed"], ep["mask"])
        loss = masked_mse(pred, ep["target"], ep["score"])
        losses.append(optimizer_step(loss, model, opt, sched))
        guard.update(losses[-1], len(losses))
    model.eval()
    return losses


def pinball_loss(quantiles: Tensor, target: Tensor, levels: tuple[float, ...],
                 where: Tensor) -> Tensor:
    """Mean pinball (quantile) loss of ``quantiles (B, T, C, Q)`` over the scored points."""
    level = torch.tensor(levels, dtype=quantiles.dtype, device=quantiles.device)
    diff = target[..., None] - quantiles
    loss = torch.maximum(level * diff, (level - 1) * diff)
    return loss[where].mean()


def _episode_loss(model: nn.Module, ep: dict[str, Tensor], idx: Tensor | None,
                  levels: tuple[float, ...], quantile_weight: float) -> Tensor:
    pick = (lambda v: v) if idx is None else (lambda v: v[idx])
    base = pick(ep["base"]) if "base" in ep else None
    point, quant = model.predict(pick(ep["inputs"]), pick(ep["observed"]), pick(ep["mask"]),
                                 base)
    target, score = pick(ep["target"]), pick(ep["score"])
    loss = masked_mse(point, target, score)
    if quant is not None:
        loss = loss + quantile_weight * pinball_loss(quant, target, levels, score)
    return loss


def fit_on_episodes(model: nn.Module, episodes: dict[str, Tensor], *, steps: int = 300,
                    batch: int = 16, lr: float = 2e-3, seed: int = 0,
                    quantile_weight: float = 1.0, progress: bool = False,
                    validation: dict[str, Tensor] | None = None,
                    eval_every: int = 25) -> list[float]:
    """Trains ``model`` on a fixed pool of episodes (Adam, one-cycle schedule).

    For hybrids whose classical ``base`` is too slow to recompute at every step, the pool is
    built once (see :func:`~n3seq.timeseries.peer_predict`) and each step draws ``batch`` of
    its episodes. The loss is the MSE on the scored points, plus ``quantile_weight`` times the
    pinball loss of the model's quantiles (if it has any).

    Args:
        model: a :class:`~n3seq.timeseries.SeriesModel`.
        episodes: a batch of :func:`~n3seq.timeseries.make_episode` dicts (all of the same
            padded length), with a ``"base"`` entry for a hybrid.
        steps: optimiser steps.
        batch: episodes per step.
        lr: peak learning rate.
        seed: seeds the draws (not the model's initialisation).
        quantile_weight: weight of the pinball loss.
        progress: show a tqdm bar.
        validation: optional held-out episodes (e.g. from the end of the training span):
            their loss is measured before training and every ``eval_every`` steps, and the
            model ends with the parameters of the best measurement (early stopping; for a
            hybrid, "before training" is its classical base).
        eval_every: steps between validation measurements.

    Returns:
        The training loss of every step (NaN for a step skipped as non-finite).
    """
    size = len(episodes["inputs"])
    if size < 1:
        raise ValueError("episodes must hold at least one episode")
    gen = torch.Generator().manual_seed(seed)
    opt, sched = adam_one_cycle(model, lr, steps)
    levels = tuple(getattr(model, "quantiles", ()))
    losses, guard = [], DivergenceGuard()
    best: tuple[float, dict[str, Tensor]] | None = None

    def measure() -> None:
        nonlocal best
        model.eval()
        with torch.no_grad():
            value = float(_episode_loss(model, validation, None, levels, quantile_weight))
        if best is None or value < best[0]:
            best = (value, {k: v.detach().clone() for k, v in model.state_dict().items()})
        model.train()

    model.train()
    if validation is not None:
        measure()
    for step in progress_range(steps, progress, "train"):
        idx = torch.randint(0, size, (min(batch, size),), generator=gen)
        loss = _episode_loss(model, episodes, idx, levels, quantile_weight)
        losses.append(optimizer_step(loss, model, opt, sched))
        guard.update(losses[-1], len(losses))
        if validation is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
            measure()
    if best is not None:
        model.load_state_dict(best[1])
    model.eval()
    return losses
