"""Context normalisation: each feature normalised over the points of its own set.

From "Learning to Find Good Correspondences" (Yi et al., CVPR 2018): per-point features are
standardised by their mean and standard deviation over the set, which passes global context
to every point while staying permutation-equivariant.

Finite input gives finite output at every scale: features whose magnitude could overflow a
square are first divided by their largest magnitude over the set (the result does not change,
the function being scale-invariant up to ``eps``). Padding content never matters: padded
entries are replaced, not multiplied, so NaN/inf there cannot leak into the statistics.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from n3seq._checks import check_floating, check_mask, check_rank, check_real, data_checks


def _check_eps(eps: object) -> float:
    eps = check_real("eps", eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return eps


def _normalise(x: Tensor, valid: Tensor | None, count: Tensor | None, eps: float) -> Tensor:
    """:func:`context_norm` on checked inputs: ``valid`` ``(B, N, 1)``, ``count`` ``(B, 1, 1)``.

    No host synchronisation. Features whose largest |value| over the set exceeds
    ``sqrt(finfo.max) / 1024`` are divided by it first (``eps`` by its square), so that no
    square or sum overflows (with ``eps = 0`` also those below its reciprocal, whose variance
    would underflow); others are left alone, bit for bit.
    """
    if x.shape[1] == 0 or x.shape[0] == 0:
        return x.clone()
    if valid is not None:
        x = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))
    big = torch.finfo(x.dtype).max ** 0.5 / 1024
    peak = x.detach().abs().amax(1, keepdim=True)
    # Detached: the normalised value does not depend on the scale, so neither does its
    # gradient (the function is identical for every fixed positive scale).
    rescale = peak > big
    if eps == 0:  # without eps, tiny features would underflow their variance: scale them up
        rescale = rescale | ((peak > 0) & (peak < 1 / big))
    scale = torch.where(rescale, peak, torch.ones_like(peak))
    x = x / scale
    eps_scaled = eps / scale.square() if eps else 0.0
    if valid is None:
        mean = x.mean(1, keepdim=True)
        var = x.var(1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps_scaled)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    mean = x.sum(1, keepdim=True) / count
    centred = torch.where(valid, x - mean, zero)
    var = centred.square().sum(1, keepdim=True) / count
    return torch.where(valid, (x - mean) / torch.sqrt(var + eps_scaled), zero)


def _set_statistics(mask: Tensor, shape: torch.Size, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``valid`` ``(B, N, 1)`` and the real-point count ``(B, 1, 1)`` of a checked mask."""
    valid = mask.expand(shape[:2])[..., None]
    return valid, valid.sum(1, keepdim=True).to(dtype)


def context_norm(x: Tensor, mask: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalises every feature of ``x`` over the (real) points of its set.

    Args:
        x: per-point features ``(B, N, D)``.
        mask: optional padding mask ``(B, N)``, ``True`` = real point. Padding points are
            left out of the statistics and set to zero in the output; their content (even
            NaN/inf) never matters.
        eps: added to the variance (>= 0).

    Returns:
        ``(B, N, D)``: per set and feature, zero mean and unit variance over real points.
        Finite for finite input at any scale.

    Raises:
        TypeError: ``x`` is not a floating tensor, ``mask`` not a bool tensor, ``eps`` not a
            number.
        ValueError: wrong shapes, a set without real points, ``eps`` negative or not finite.

    Shape:
        - x: :math:`(B, N, D)`; mask: :math:`(B, N)`; output: :math:`(B, N, D)`

    Example:
        >>> y = context_norm(torch.randn(2, 50, 8))
        >>> torch.allclose(y.mean(1), torch.zeros(2, 8), atol=1e-5)
        True
    """
    check_floating(x, "x")
    check_rank(x, "x", "B, N, D")
    eps = _check_eps(eps)
    if mask is None:
        return _normalise(x, None, None, eps)
    check_mask(mask, "mask", tuple(x.shape[:2]), "B, N")
    valid, count = _set_statistics(mask, x.shape, x.dtype)
    if data_checks() and count.numel() and bool((count == 0).any()):
        row = int((count.flatten() == 0).nonzero()[0])
        raise ValueError(f"mask row {row} has no real point (empty set)")
    return _normalise(x, valid, count, eps)


class ContextNorm(nn.Module):
    """Module form of :func:`context_norm`.

    Example:
        >>> ContextNorm()(torch.randn(2, 50, 8), torch.ones(2, 50, dtype=torch.bool)).shape
        torch.Size([2, 50, 8])
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = _check_eps(eps)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return context_norm(x, mask, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
