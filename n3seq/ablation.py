"""Building blocks for "with vs without N³ at the same parameter budget" comparisons.

The adapters' experiments each compare a network containing an N³ stage with the identical
network whose N³ stage is replaced by a dense residual layer and whose width is raised until
the parameter counts match. These pieces are shared by all of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from n3seq._checks import check_int
from n3seq.block import N3Block


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def matching_width(
    target: int, build: Callable[[int], nn.Module], widths: range = range(4, 1025)
) -> int:
    """The width whose model ``build(width)`` has the parameter count closest to ``target``.

    Gives the network without N³ the parameter budget of the one with N³. The count must grow
    with the width (it is bisected).

    Example:
        >>> target = count_parameters(nn.Sequential(nn.Linear(8, 16), N3Residual(16, k=4)))
        >>> width = matching_width(target, lambda w: nn.Sequential(nn.Linear(8, w),
        ...                                                        DenseResidual(w)))
        >>> width > 16
        True
    """
    target = check_int("target", target, min=0)
    if not callable(build):
        raise TypeError(f"build must be callable (width -> module), got {type(build).__name__}")
    if not isinstance(widths, range) or len(widths) == 0:
        raise ValueError(f"widths must be a non-empty range, got {widths!r}")
    probe = build(widths[0])
    if not isinstance(probe, nn.Module):
        raise TypeError(f"build({widths[0]}) must return an nn.Module, got "
                        f"{type(probe).__name__}")
    lo, hi = 0, len(widths) - 1
    while lo < hi:  # first width whose count reaches the target
        mid = (lo + hi) // 2
        if count_parameters(build(widths[mid])) < target:
            lo = mid + 1
        else:
            hi = mid
    near = [widths[i] for i in (lo - 1, lo) if 0 <= i < len(widths)]
    return min(near, key=lambda w: abs(count_parameters(build(w)) - target))


class N3Residual(nn.Module):
    """Residual N³ stage ``h + Linear([h, ĥ₁ − h, …, ĥₖ − h])`` on ``(B, T, D)`` tokens.

    Args:
        dim: token features D.
        k: neighbours of the :class:`~n3seq.N3Block`.
        radius: ``None`` to search all tokens, or a 1-D window radius.
        temperature_bias: scale of the learned temperature.

    Shape:
        - h: :math:`(B, T, D)`, optional padding ``mask`` :math:`(B, T)`
        - output: :math:`(B, T, D)`
    """

    def __init__(self, dim: int, k: int = 7, radius: int | None = None,
                 temperature_bias: float = 0.1) -> None:
        super().__init__()
        self.block = N3Block(dim, k, temperature_bias=temperature_bias, radius=radius)
        self.radius = radius
        self.proj = nn.Linear(self.block.out_dim, dim)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        return h + self.proj(self.block(h, mask=mask))


class DenseResidual(nn.Module):
    """The stand-in for :class:`N3Residual` without N³: ``h + Linear(relu(h))``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        dim = check_int("dim", dim, min=1)
        self.proj = nn.Linear(dim, dim)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        return h + self.proj(torch.relu(h))
