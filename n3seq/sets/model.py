"""Correspondence classifier: per-point MLP with context normalisation and one N³ block.

As in learned-correspondence networks (Yi et al., 2018), every correspondence
``(x1, y1, x2, y2)`` is processed by a shared per-point MLP (1×1 convolutions) whose
residual blocks normalise each feature over the set (:func:`context_norm`). In the middle an
:class:`n3seq.N3Block` searches the whole set (query excluded, padding never chosen), as in
the correspondence experiment of Plötz & Roth (2018). The output is one inlier logit per
correspondence. Every layer is per-point or a symmetric function of the set, so the network
is permutation-equivariant.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from n3seq._checks import check_finite, check_floating, check_mask, check_rank
from n3seq.block import N3Block
from n3seq.sets.context_norm import context_norm


class ContextNormBlock(nn.Module):
    """Residual block ``h + Linear(relu(CN(Linear(relu(CN(h))))))`` on per-point features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        z = self.fc1(torch.relu(context_norm(h, mask)))
        z = self.fc2(torch.relu(context_norm(z, mask)))
        return h + z


class SetN3Stage(nn.Module):
    """Residual ``h + Linear(N3Block(h))`` over the whole set."""

    def __init__(self, dim: int, k: int = 8, temperature_bias: float = 0.1) -> None:
        super().__init__()
        self.block = N3Block(dim, k, temperature_bias=temperature_bias)
        self.proj = nn.Linear(self.block.out_dim, dim)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        return h + self.proj(self.block(h, mask=mask))


class SetDenseStage(nn.Module):
    """The stand-in for :class:`SetN3Stage` without N³: ``h + Linear(relu(h))``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        return h + self.proj(torch.relu(h))


class CorrespondenceNet(nn.Module):
    """Inlier logits for an unordered set of putative 2-D correspondences.

    Args:
        in_dim: features per correspondence (4 for ``(x1, y1, x2, y2)``).
        width: per-point feature size D.
        depth: context-norm residual blocks before and after the N³ stage.
        k: neighbours of the N³ block.
        use_n3: ``False`` replaces the N³ stage by :class:`SetDenseStage` (the ablation).

    Shape:
        - x: :math:`(B, N, \\text{in\\_dim})`; optional padding ``mask`` :math:`(B, N)`
          (True = real; padding may sit anywhere in the set)
        - output: logits :math:`(B, N)`, zero on padding (mask the loss)

    Example:
        >>> net = CorrespondenceNet(width=32, k=4)
        >>> net(torch.randn(2, 100, 4)).shape
        torch.Size([2, 100])
    """

    def __init__(self, in_dim: int = 4, width: int = 64, depth: int = 2, k: int = 8,
                 use_n3: bool = True) -> None:
        super().__init__()
        if in_dim < 1 or width < 1 or depth < 0:
            raise ValueError(f"need in_dim >= 1, width >= 1, depth >= 0, got {in_dim}, "
                             f"{width}, {depth}")
        self.in_dim, self.use_n3, self.k = in_dim, use_n3, k
        self.embed = nn.Linear(in_dim, width)
        self.pre = nn.ModuleList(ContextNormBlock(width) for _ in range(depth))
        self.mid = SetN3Stage(width, k) if use_n3 else SetDenseStage(width)
        self.post = nn.ModuleList(ContextNormBlock(width) for _ in range(depth))
        self.head = nn.Linear(width, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        check_floating(x, "x")
        check_rank(x, "x", "B, N, D")
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"x must have D={self.in_dim} features per correspondence, got "
                             f"shape {tuple(x.shape)}")
        if mask is not None:
            check_mask(mask, "mask", tuple(x.shape[:2]), "B, N")
            mask = mask.expand(x.shape[:2])
            need = self.k + 1 if self.use_n3 else 1
            low = int(mask.sum(-1).min())
            if low < need:
                raise ValueError(f"every set needs at least {need} real points (k={self.k} "
                                 f"neighbours + the query), got a set with {low}")
            x = x * mask[..., None]
        check_finite(x, "x")
        h = self.embed(x)
        for block in self.pre:
            h = block(h, mask)
        h = self.mid(h, mask)
        for block in self.post:
            h = block(h, mask)
        logits = self.head(torch.relu(context_norm(h, mask)))[..., 0]
        return logits if mask is None else logits * mask


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def matching_width(target: int, build: Callable[[int], nn.Module],
                   widths: range = range(4, 1025)) -> int:
    """The width whose model ``build(width)`` has the parameter count closest to ``target``.

    Gives the network without N³ the parameter budget of the one with N³ (bisection; the
    count must grow with the width).
    """
    lo, hi = 0, len(widths) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if count_parameters(build(widths[mid])) < target:
            lo = mid + 1
        else:
            hi = mid
    near = [widths[i] for i in (lo - 1, lo) if 0 <= i < len(widths)]
    return min(near, key=lambda w: abs(count_parameters(build(w)) - target))
