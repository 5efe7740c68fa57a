"""A short, seeded training loop for :class:`~n3seq.timeseries.SeriesModel`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from n3seq._train_utils import adam_one_cycle, optimizer_step, progress_range
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
        The training loss of every step.
    """
    check_task(task)
    gen = torch.Generator().manual_seed(seed)
    opt, sched = adam_one_cycle(model, lr, steps)
    losses = []
    model.train()
    for _ in progress_range(steps, progress, f"train {task}"):
        crops, lengths = random_crops(train, batch, min_len, max_len, gen)
        ep = make_episode(crops, lengths, task, generator=gen, **episode_kwargs)
        pred = model(ep["inputs"], ep["observed"], ep["mask"])
        loss = masked_mse(pred, ep["target"], ep["score"])
        losses.append(optimizer_step(loss, model, opt, sched))
    model.eval()
    return losses
