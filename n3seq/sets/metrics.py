"""Inlier-classification metrics: precision, recall, F1 and (mean) average precision."""

from __future__ import annotations

import torch
from torch import Tensor


def _check(scores: Tensor, labels: Tensor, mask: Tensor | None) -> Tensor:
    if scores.dim() != 2:
        raise ValueError(f"scores must have shape (B, N), got {tuple(scores.shape)}")
    if labels.shape != scores.shape or labels.dtype != torch.bool:
        raise ValueError(f"labels must be a bool tensor of shape {tuple(scores.shape)}, got "
                         f"{labels.dtype} {tuple(labels.shape)}")
    if mask is None:
        return torch.ones_like(labels)
    if mask.shape != scores.shape or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor of shape {tuple(scores.shape)}, got "
                         f"{mask.dtype} {tuple(mask.shape)}")
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
    if scores.dim() != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must have the same shape (N,), got "
                         f"{tuple(scores.shape)} and {tuple(labels.shape)}")
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
    aps = [average_precision(s[m], y[m]) for s, y, m in zip(logits, labels, mask)]
    return sum(aps) / len(aps)
