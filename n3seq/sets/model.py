"""Correspondence classifier: per-point MLP with context normalisation and one N³ block.

As in learned-correspondence networks (Yi et al., 2018), every correspondence
``(x1, y1, x2, y2)`` is processed by a shared per-point MLP (1×1 convolutions) whose
residual blocks normalise each feature over the set (:func:`context_norm`). In the middle an
:class:`n3seq.N3Block` searches the whole set (query excluded, padding never chosen), as in
the correspondence experiment of Plötz & Roth (2018). The output is one inlier logit per
correspondence. Every layer is per-point or a symmetric function of the set, so the network
is permutation-equivariant.

Padding content never matters (padded points are replaced by zeros, never multiplied), NaN/inf
at a real point is an error naming ``x``, the point and the value, an empty batch gives an
empty output, and finite input gives finite logits or an ``OverflowError``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from n3seq._checks import (
    check_bool,
    check_floating,
    check_int,
    check_mask,
    check_rank,
    data_checks,
    finite_abs_max,
)
from n3seq.ablation import DenseResidual, N3Residual
from n3seq.sets.context_norm import _normalise, _set_statistics, context_norm


class ContextNormBlock(nn.Module):
    """Residual block ``h + Linear(relu(CN(Linear(relu(CN(h))))))`` on per-point features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        dim = check_int("dim", dim, min=1)
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, h: Tensor, mask: Tensor | None = None, *, validate: bool = True) -> Tensor:
        """``h + fc2(relu(CN(fc1(relu(CN(h))))))``.

        Args:
            h: per-point features ``(B, N, D)``.
            mask: optional padding mask ``(B, N)``, ``True`` = real point.
            validate: check ``mask`` (non-empty sets; one host synchronisation per
                normalisation); callers that checked it already pass ``False``.
        """
        if validate:
            z = self.fc1(torch.relu(context_norm(h, mask)))
            return h + self.fc2(torch.relu(context_norm(z, mask)))
        valid, count = (None, None) if mask is None else _set_statistics(mask, h.shape, h.dtype)
        z = self.fc1(torch.relu(_normalise(h, valid, count, 1e-5)))
        return h + self.fc2(torch.relu(_normalise(z, valid, count, 1e-5)))


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
        in_dim = check_int("in_dim", in_dim, min=1)
        width = check_int("width", width, min=1)
        depth = check_int("depth", depth, min=0)
        k = check_int("k", k, min=1)
        use_n3 = check_bool("use_n3", use_n3)
        self.in_dim, self.use_n3, self.k = in_dim, use_n3, k
        self.embed = nn.Linear(in_dim, width)
        self.pre = nn.ModuleList(ContextNormBlock(width) for _ in range(depth))
        self.mid = SetN3Stage(width, k) if use_n3 else SetDenseStage(width)
        self.post = nn.ModuleList(ContextNormBlock(width) for _ in range(depth))
        self.head = nn.Linear(width, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Inlier logits ``(B, N)``, zero on padding.

        Raises:
            TypeError: ``x`` is not a floating tensor or ``mask`` not a bool tensor.
            ValueError: wrong shapes; a set with fewer than ``k + 1`` real points (1 without
                N³); NaN/inf at a real point (naming ``x``, the index ``(b, n, d)`` and the
                value; padding content is never looked at).
            OverflowError: finite input whose values overflow inside the network.
        """
        check_floating(x, "x")
        check_rank(x, "x", "B, N, D")
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"x must have D={self.in_dim} features per correspondence, got "
                             f"shape {tuple(x.shape)}")
        b, n, _ = x.shape
        if mask is not None:
            check_mask(mask, "mask", (b, n), "B, N")
            mask = mask.expand(b, n)
        if b == 0:  # an empty batch: empty logits, as torch ops give
            out = x.new_zeros(b, n)
            return out + x.sum() * 0 if torch.is_grad_enabled() else out
        need = self.k + 1 if self.use_n3 else 1
        where = None
        if mask is not None:
            # Padding never matters: padded points are replaced (x * mask would turn inf
            # there into NaN).
            where = mask[..., None]
            x = torch.where(where, x, torch.zeros((), dtype=x.dtype, device=x.device))
        what = None if mask is None else "real points"
        maxima = finite_abs_max([(x, "x", where, what)])  # one host sync
        if data_checks():
            low = n if mask is None else int(mask.sum(-1).min())
            if low < need:
                what = f"{need} real points (k={self.k} neighbours + the query)" if \
                    self.use_n3 else "1 real point"
                raise ValueError(f"every set needs at least {what}, got a set with {low}")
        valid, count = (None, None) if mask is None else _set_statistics(mask, x.shape, x.dtype)
        h = self.embed(x)
        for block in self.pre:
            h = block(h, mask, validate=False)
        h = self.mid(h, mask)
        for block in self.post:
            h = block(h, mask, validate=False)
        logits = self.head(torch.relu(_normalise(h, valid, count, 1e-5)))[..., 0]
        if mask is not None:
            logits = torch.where(mask, logits, torch.zeros((), dtype=logits.dtype,
                                                           device=logits.device))
        if maxima is not None and not bool(torch.isfinite(logits).all()):
            raise OverflowError(
                f"CorrespondenceNet: the logits are not finite although x is (largest |x| "
                f"{maxima[0]:.3g}): the values overflow {str(x.dtype).removeprefix('torch.')} "
                f"inside the network; pass normalised coordinates (about [-1, 1])"
            )
        return logits


