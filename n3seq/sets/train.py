"""A short, seeded training loop for :class:`~n3seq.sets.CorrespondenceNet`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from n3seq._train_utils import adam_one_cycle, optimizer_step, progress_range
from n3seq.sets.data import make_correspondences


def inlier_loss(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Binary cross-entropy over real points, inliers and outliers weighted equally.

    Outliers outnumber inliers (up to 9:1), so each class's loss is averaged separately and
    the two means are averaged, as in learned-correspondence training.
    """
    if mask is None:
        mask = torch.ones_like(labels)
    target = labels.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pos, neg = (labels & mask).to(logits.dtype), (~labels & mask).to(logits.dtype)
    return 0.5 * ((loss * pos).sum() / pos.sum().clamp(min=1)
                  + (loss * neg).sum() / neg.sum().clamp(min=1))


def fit_correspondence_net(model: nn.Module, *, steps: int = 500, batch: int = 16,
                           lr: float = 1e-3, seed: int = 0, progress: bool = False,
                           **data_kwargs: Any) -> list[float]:
    """Trains ``model`` on freshly generated correspondence sets (Adam, one-cycle schedule).

    Args:
        model: maps ``(x, mask)`` to logits.
        steps: optimiser steps, a new batch each (one-cycle learning rate with 10 % warm-up
            from 20 steps on, a constant ``lr`` below).
        batch: sets per step.
        lr: peak learning rate.
        seed: seeds the data stream (not the model initialisation).
        progress: show a tqdm bar.
        **data_kwargs: passed to :func:`~n3seq.sets.make_correspondences`.

    Returns:
        The loss of every step.
    """
    gen = torch.Generator().manual_seed(seed)
    opt, sched = adam_one_cycle(model, lr, steps)
    losses = []
    model.train()
    for _ in progress_range(steps, progress, "train sets"):
        data = make_correspondences(batch, generator=gen, **data_kwargs)
        loss = inlier_loss(model(data["x"], data["mask"]), data["labels"], data["mask"])
        losses.append(optimizer_step(loss, model, opt, sched))
    model.eval()
    return losses
