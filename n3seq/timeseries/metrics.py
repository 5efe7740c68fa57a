"""Error metrics restricted to the points a task scores (gaps, horizon, real steps)."""

from __future__ import annotations

import torch
from torch import Tensor


def _check(pred: Tensor, target: Tensor, where: Tensor | None) -> Tensor:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    if where is None:
        return torch.ones_like(pred, dtype=torch.bool)
    if not isinstance(where, Tensor) or where.dtype != torch.bool:
        raise TypeError("where must be a bool tensor (True = scored point)")
    try:
        where = where.expand_as(pred)
    except RuntimeError:
        raise ValueError(f"where must be broadcastable to {tuple(pred.shape)}, got "
                         f"{tuple(where.shape)}") from None
    if not bool(where.any()):
        raise ValueError("where selects no point to score")
    return where


def masked_mse(pred: Tensor, target: Tensor, where: Tensor | None = None) -> Tensor:
    """Mean squared error over the points where ``where`` is True (all points if None).

    Example:
        >>> masked_mse(torch.tensor([1.0, 5.0]), torch.tensor([0.0, 0.0]),
        ...            torch.tensor([True, False]))
        tensor(1.)
    """
    where = _check(pred, target, where)
    return (pred - target)[where].square().mean()


def masked_mae(pred: Tensor, target: Tensor, where: Tensor | None = None) -> Tensor:
    """Mean absolute error over the points where ``where`` is True (all points if None)."""
    where = _check(pred, target, where)
    return (pred - target)[where].abs().mean()
