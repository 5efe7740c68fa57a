"""The continuous relaxation of k-nearest-neighbour selection (Plötz & Roth, 2018, eq. 6-8).

For scores ``s`` (higher = closer) and temperature ``t`` the k weight vectors are

    a¹ = s,    wʲ = softmax(aʲ / t),    aʲ⁺¹ = aʲ + log(1 − wʲ),    j = 1 … k.

Each round is a softmax; ``log(1 − wʲ)`` pushes down what earlier rounds already took. As
``t → 0`` round j becomes the one-hot vector of the j-th largest score (:func:`hard_knn`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from n3seq._checks import (
    as_temperature,
    check_enough_candidates,
    check_finite,
    check_floating,
    check_k,
    check_mask,
    compute_dtype,
)
from n3seq._fused import fused_continuous_knn


def _log1m_softmax(log_w: Tensor) -> Tensor:
    """``log(1 − w)`` for ``log_w = log_softmax(·)``, accurate for every w in [0, 1].

    Where w ≤ 1/2, ``log1p(−w)`` is exact. At most one weight per row exceeds 1/2; for it,
    ``1 − w`` is the sum of the *other* weights, taken as a logsumexp: no cancellation even when
    w rounds to 1. Tied candidates (each w ≤ 1/2) thus share one formula and stay exactly tied.
    Both branches are finite wherever ``torch.where`` evaluates them, so the gradient has no
    0·inf terms.
    """
    is_max = torch.zeros_like(log_w, dtype=torch.bool).scatter_(
        -1, log_w.argmax(dim=-1, keepdim=True), True
    ) & (log_w > -math.log(2.0))
    others = log_w.masked_fill(is_max, float("-inf"))
    log1m_others = torch.log1p(-others.exp())
    log1m_max = torch.logsumexp(others, dim=-1, keepdim=True)
    return torch.where(is_max, log1m_max, log1m_others)


class _Reciprocal(torch.autograd.Function):
    """``1 / t`` whose backward is ``−(g / t) / t``, never ``g · (1 / t²)``.

    At tiny t (learned temperatures do get there) ``1 / t²`` overflows float32 and saturated
    rows bring ``g = 0``: ``0 · inf`` would make the temperature gradient NaN.
    """

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:
        inv_t = t.reciprocal()
        ctx.save_for_backward(inv_t)
        return inv_t

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (inv_t,) = ctx.saved_tensors
        return -(grad * inv_t) * inv_t


def continuous_knn_unchecked(
    scores: Tensor, k: int, temperature: Tensor, mask: Tensor | None = None
) -> Tensor:
    """:func:`continuous_knn` without input checks or dtype handling (for internal callers)."""
    inv_t = _Reciprocal.apply(temperature)
    if mask is None:
        logits = scores * inv_t
    else:
        # Excluded candidates never meet −inf / t: that would give NaN temperature gradients.
        logits = torch.where(mask, scores.masked_fill(~mask, 0.0) * inv_t, float("-inf"))
    weights = []
    for j in range(k):
        log_w = torch.log_softmax(logits, dim=-1)
        weights.append(log_w.exp())
        if j + 1 < k:
            logits = logits + _log1m_softmax(log_w) * inv_t
    return torch.stack(weights, dim=-2)


def _validate_scores(scores: Tensor, k: int, mask: Tensor | None) -> Tensor | None:
    """Checks ``scores (..., O)``, ``k`` and ``mask``; returns the mask expanded to ``scores``."""
    check_floating(scores, "scores")
    if scores.dim() < 1:
        raise ValueError("scores must have shape (..., O), got a 0-d tensor")
    check_k(k)
    if mask is None:
        check_finite(scores, "scores")
        if scores.shape[-1] < k:
            raise ValueError(
                f"k={k} is larger than the number of candidates O={scores.shape[-1]} "
                f"(scores shape {tuple(scores.shape)})"
            )
        return None
    check_mask(mask, "mask", tuple(scores.shape), "..., O")
    mask = mask.expand_as(scores)
    check_finite(scores.masked_fill(~mask, 0.0), "scores (at valid candidates)")
    check_enough_candidates(mask.sum(-1), k, "mask")
    return mask


def continuous_knn(
    scores: Tensor,
    k: int,
    temperature: float | Tensor = 1.0,
    mask: Tensor | None = None,
) -> Tensor:
    r"""Continuous (soft) k-nearest-neighbour selection weights.

    Runs ``k`` rounds of ``wʲ = softmax(aʲ / t)``, ``aʲ⁺¹ = aʲ + log(1 − wʲ)`` starting from
    ``a¹ = scores``, in log space. Differentiable in ``scores`` and ``temperature``; as the
    temperature goes to 0 it equals :func:`hard_knn`.

    The N³ authors' released code divides the scores by ``t`` once and then runs the recursion
    at ``t = 1``; that function is ``continuous_knn(scores / t, k)`` (see the docs page
    *The relaxation* for how the two differ).

    Args:
        scores: similarities, higher = closer (e.g. negative squared distances).
        k: number of neighbours (rounds), ``1 <= k <= number of valid candidates``.
        temperature: a positive float, or a positive tensor broadcastable to
            ``scores[..., :1]`` (one temperature per row).
        mask: optional bool tensor broadcastable to ``scores``; ``True`` marks valid
            candidates. Excluded candidates get weight exactly 0 and zero gradient.

    Returns:
        Weights of shape ``(..., k, O)``; row ``j`` sums to 1 over the valid candidates.

    Shape:
        - scores: :math:`(..., O)`
        - temperature: scalar or :math:`(..., 1)`
        - mask: :math:`(..., O)`
        - output: :math:`(..., k, O)`

    Example:
        >>> scores = torch.tensor([[3.0, 1.0, 2.0]])
        >>> continuous_knn(scores, k=2, temperature=1e-3).round()
        tensor([[[1., 0., 0.],
                 [0., 0., 1.]]])
    """
    mask = _validate_scores(scores, k, mask)
    dtype = compute_dtype(scores)
    t = as_temperature(
        temperature, (*scores.shape[:-1], 1), dtype=dtype, device=scores.device
    )
    with torch.autocast(scores.device.type, enabled=False):
        weights = fused_continuous_knn(scores.to(dtype), k, t, mask)
    return weights.to(scores.dtype)


def hard_knn(scores: Tensor, k: int, mask: Tensor | None = None) -> Tensor:
    """One-hot selection of the k largest scores, in decreasing order.

    The ``t → 0`` limit of :func:`continuous_knn`. Ties are broken by the lowest index.

    Args:
        scores: similarities, higher = closer.
        k: number of neighbours.
        mask: optional bool tensor broadcastable to ``scores``; ``True`` = valid candidate.

    Returns:
        One-hot weights of shape ``(..., k, O)`` in ``scores.dtype``.

    Shape:
        - scores: :math:`(..., O)`
        - output: :math:`(..., k, O)`

    Example:
        >>> hard_knn(torch.tensor([1.0, 3.0, 2.0]), k=2)
        tensor([[0., 1., 0.],
                [0., 0., 1.]])
    """
    mask = _validate_scores(scores, k, mask)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    # A stable descending sort keeps equal scores in index order: lowest index wins ties.
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
    one_hot = torch.zeros(*scores.shape[:-1], k, scores.shape[-1], dtype=scores.dtype,
                          device=scores.device)
    return one_hot.scatter_(-1, order.unsqueeze(-1), 1.0)


class ContinuousKNN(nn.Module):
    """Module form of :func:`continuous_knn` with a fixed ``k`` and temperature.

    Args:
        k: number of neighbours.
        temperature: positive float used when ``forward`` is not given one.

    Example:
        >>> ContinuousKNN(k=2)(torch.randn(4, 10)).shape
        torch.Size([4, 2, 10])
    """

    def __init__(self, k: int, temperature: float = 1.0) -> None:
        super().__init__()
        check_k(k)
        as_temperature(temperature, torch.Size([]))
        self.k = k
        self.temperature = temperature

    def forward(
        self, scores: Tensor, temperature: float | Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        t = self.temperature if temperature is None else temperature
        return continuous_knn(scores, self.k, t, mask)

    def extra_repr(self) -> str:
        return f"k={self.k}, temperature={self.temperature}"
