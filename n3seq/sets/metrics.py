"""Inlier-classification metrics: precision, recall, F1 and (mean) average precision."""

from __future__ import annotations

import torch
from torch import Tensor

from n3seq._checks import check_finite, check_floating, check_real


def _check_bool(x: object, name: str, shape: torch.Size) -> None:
    if not isinstance(x, Tensor) or x.dtype != torch.bool:
        kind = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a bool tensor, got {kind}")
    if x.shape != shape:
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")


def _check(scores: Tensor, labels: Tensor, mask: Tensor | None, name: str = "logits") -> Tensor:
    """Checks ``(B, N)`` scores, labels and mask; NaN/inf only matters at real points."""
    check_floating(scores, name)
    if scores.dim() != 2:
        raise ValueError(f"{name} must have shape (B, N), got {tuple(scores.shape)}")
    _check_bool(labels, "labels", scores.shape)
    if mask is None:
        mask = torch.ones_like(labels)
    else:
        _check_bool(mask, "mask", scores.shape)
    check_finite(scores, name, mask, "real points")
    return mask


def precision_recall_f1(logits: Tensor, labels: Tensor, mask: Tensor | None = None,
                        threshold: float = 0.0) -> dict[str, float]:
    """Precision, recall and F1 of ``logits > threshold``, pooled over all real points.

    Example:
        >>> precision_recall_f1(torch.tensor([[2.0, -1.0, 3.0]]),
        ...                     torch.tensor([[True, True, False]]))
        {'precision': 0.5, 'recall': 0.5, 'f1': 0.5}
    """
    mask = _check(logits, labels, mask)
    threshold = check_real("threshold", threshold)
    pred = (logits > threshold) & mask
    truth = labels & mask
    tp = float((pred & truth).sum())
    precision = tp / max(float(pred.sum()), 1.0)
    recall = tp / max(float(truth.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """Average precision of one ranking: mean of the precision at each true positive.

    Args:
        scores: ``(N,)``, higher = more likely an inlier.
        labels: bool ``(N,)``; needs at least one positive.

    Example:
        >>> average_precision(torch.tensor([0.9, 0.8, 0.1]), torch.tensor([True, False, True]))
        0.8333333333333333
    """
    check_floating(scores, "scores")
    if scores.dim() != 1:
        raise ValueError(f"scores must have shape (N,), got {tuple(scores.shape)}")
    _check_bool(labels, "labels", scores.shape)
    check_finite(scores, "scores")
    if not bool(labels.any()):
        raise ValueError("labels has no positive: average precision is undefined")
    hits = labels[torch.argsort(scores, descending=True, stable=True)].double()
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    return float((precision * hits).sum() / hits.sum())


def mean_average_precision(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> float:
    """Mean over sets of :func:`average_precision` on each set's real points.

    Shape:
        - logits, labels, mask: :math:`(B, N)`
    """
    mask = _check(logits, labels, mask)
    if logits.shape[0] == 0:
        raise ValueError("mean_average_precision needs at least one set, got an empty batch "
                         f"{tuple(logits.shape)}")
    aps = []
    for b, (s, y, m) in enumerate(zip(logits, labels, mask)):
        if not bool((y & m).any()):
            raise ValueError(f"set {b} has no inlier among its real points: average precision "
                             f"is undefined")
        aps.append(average_precision(s[m], y[m]))
    return sum(aps) / len(aps)
