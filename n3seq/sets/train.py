"""A short, seeded training loop for :class:`~n3seq.sets.CorrespondenceNet`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from n3seq._checks import check_bool, check_int, check_real
from n3seq._train_utils import (
    DivergenceGuard,
    adam_one_cycle,
    optimizer_step,
    progress_range,
)
from n3seq.sets.data import make_correspondences
from n3seq.sets.metrics import _check_bool


def inlier_loss(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Binary cross-entropy over real points, inliers and outliers weighted equally.

    Outliers outnumber inliers (up to 9:1), so each class's loss is averaged separately and
    the two means are averaged, as in learned-correspondence training. Padded points never
    matter (their loss is replaced, not multiplied, so NaN there cannot leak in); a class
    without any point contributes 0, so an empty batch has loss 0.

    Raises:
        TypeError: ``logits`` is not a floating tensor, ``labels``/``mask`` not bool tensors.
        ValueError: shapes differ or are not ``(B, N)``.
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        kind = logits.dtype if isinstance(logits, Tensor) else type(logits).__name__
        raise TypeError(f"logits must be a floating-point tensor, got {kind}")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, N), got {tuple(logits.shape)}")
    _check_bool(labels, "labels", logits.shape)
    if mask is None:
        mask = torch.ones_like(labels)
    else:
        _check_bool(mask, "mask", logits.shape)
    target = labels.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    pos, neg = labels & mask, ~labels & mask
    return 0.5 * (torch.where(pos, loss, zero).sum() / pos.sum().clamp(min=1)
                  + torch.where(neg, loss, zero).sum() / neg.sum().clamp(min=1))


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
        The loss of every step (NaN for a step skipped as non-finite).
    """
    steps = check_int("steps", steps, min=1)
    batch = check_int("batch", batch, min=1)
    lr = check_real("lr", lr, positive=True)
    seed = check_int("seed", seed)
    progress = check_bool("progress", progress)
    make_correspondences(0, **data_kwargs)  # checks the data settings before any training
    gen = torch.Generator().manual_seed(seed)
    opt, sched = adam_one_cycle(model, lr, steps)
    losses, guard = [], DivergenceGuard()
    model.train()
    for _ in progress_range(steps, progress, "train sets"):
        data = make_correspondences(batch, generator=gen, **data_kwargs)
        loss = inlier_loss(model(data["x"], data["mask"]), data["labels"], data["mask"])
        losses.append(optimizer_step(loss, model, opt, sched))
        guard.update(losses[-1], len(losses))
    model.eval()
    return losses
