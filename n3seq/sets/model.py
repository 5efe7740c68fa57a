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

import torch
from torch import Tensor, nn

from n3seq._checks import check_finite, check_floating, check_mask, check_rank
from n3seq.ablation import DenseResidual, N3Residual
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


#: Residual ``h + Linear(N3Block(h))`` over the whole set.
SetN3Stage = N3Residual
#: The stand-in for :data:`SetN3Stage` without N³: ``h + Linear(relu(h))``.
SetDenseStage = DenseResidual


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


