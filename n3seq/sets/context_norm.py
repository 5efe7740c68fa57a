"""Context normalisation: each feature normalised over the points of its own set.

From "Learning to Find Good Correspondences" (Yi et al., CVPR 2018): per-point features are
standardised by their mean and standard deviation over the set, which passes global context
to every point while staying permutation-equivariant.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from n3seq._checks import check_floating, check_mask, check_rank


def context_norm(x: Tensor, mask: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalises every feature of ``x`` over the (real) points of its set.

    Args:
        x: per-point features ``(B, N, D)``.
        mask: optional padding mask ``(B, N)``, ``True`` = real point. Padding points are
            left out of the statistics and set to zero in the output.
        eps: added to the variance.

    Returns:
        ``(B, N, D)``: per set and feature, zero mean and unit variance over real points.

    Shape:
        - x: :math:`(B, N, D)`; mask: :math:`(B, N)`; output: :math:`(B, N, D)`

    Example:
        >>> y = context_norm(torch.randn(2, 50, 8))
        >>> torch.allclose(y.mean(1), torch.zeros(2, 8), atol=1e-5)
        True
    """
    check_floating(x, "x")
    check_rank(x, "x", "B, N, D")
    if mask is None:
        mean = x.mean(1, keepdim=True)
        var = x.var(1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps)
    check_mask(mask, "mask", tuple(x.shape[:2]), "B, N")
    weight = mask.expand(x.shape[:2])[..., None].to(x.dtype)
    count = weight.sum(1, keepdim=True)
    if bool((count == 0).any()):
        row = int((count.flatten() == 0).nonzero()[0])
        raise ValueError(f"mask row {row} has no real point (empty set)")
    x = x * weight
    mean = x.sum(1, keepdim=True) / count
    var = ((x - mean).square() * weight).sum(1, keepdim=True) / count
    return (x - mean) / torch.sqrt(var + eps) * weight


class ContextNorm(nn.Module):
    """Module form of :func:`context_norm`.

    Example:
        >>> ContextNorm()(torch.randn(2, 50, 8), torch.ones(2, 50, dtype=torch.bool)).shape
        torch.Size([2, 50, 8])
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return context_norm(x, mask, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
