"""The N³ block for token sequences and sets: ``(B, T, D)`` → ``(B, T, (k + 1)·D)``.

Padding (``mask`` False) never matters: padded tokens are replaced by zeros before anything
else, so the output at padded positions is that of a zero token and NaN/inf there is
ignored. With ``radius`` the mask must be right-padded (a prefix of each row), which is
checked. Finite input gives finite output or an ``OverflowError`` that says where the
overflow would happen. ``torch.jit.trace`` records none of the input checks and
``torch.jit.script`` is refused (see :mod:`n3seq.relaxation`); ``torch.compile`` and
``torch.func`` transforms work.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from n3seq._checks import (
    check_bool,
    check_finite,
    check_floating,
    check_int,
    check_k,
    check_mask,
    check_module_input,
    check_optional_int,
    check_rank,
    check_real,
    data_checks,
    fetch,
    masked_abs,
    meta_aware,
    raise_non_finite,
    tracing,
)
from n3seq.aggregate import _knn_aggregate, _window_candidates
from n3seq.relaxation import SCRIPT_UNSUPPORTED

#: How the block's internal tensors are named in messages (x itself is checked before).
_NAMES = ("the embedding of x", "the embedding of x", "x",
          "the temperature (temperature_bias · exp(temperature_net(x)))")


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Two-layer perceptron ``Linear → ReLU → Linear``, the default embedding network."""
    in_dim = check_int("in_dim", in_dim, min=1)
    hidden = check_int("hidden", hidden, min=1)
    out_dim = check_int("out_dim", out_dim, min=1)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def n3_output(x: Tensor, neighbours: Tensor, differences: bool = True) -> Tensor:
    """Concatenates ``x`` with its k neighbours: ``[x, x̂₁ − x, …, x̂ₖ − x]`` (or raw ``x̂ⱼ``).

    Shape:
        - x: :math:`(B, T, D)`
        - neighbours: :math:`(B, T, k, D)`
        - output: :math:`(B, T, (k + 1) D)`

    Raises:
        TypeError: if an input is not a floating tensor or ``differences`` not a bool.
        ValueError: if ``neighbours`` is not ``(B, T, k, D)`` for ``x`` ``(B, T, D)``.
    """
    check_floating(x, "x")
    check_rank(x, "x", "B, T, D")
    check_floating(neighbours, "neighbours")
    check_rank(neighbours, "neighbours", "B, T, k, D")
    differences = check_bool("differences", differences)
    b, t, d = x.shape
    if neighbours.shape[:2] != (b, t) or neighbours.shape[3] != d:
        raise ValueError(f"neighbours must have shape (B, T, k, D) = ({b}, {t}, k, {d}), got "
                         f"{tuple(neighbours.shape)}")
    if differences:
        neighbours = neighbours - x[:, :, None, :]
    return torch.cat([x, rearrange(neighbours, "b t k d -> b t (k d)")], dim=-1)


class N3Block(nn.Module):
    r"""Neural nearest neighbours block for ``(B, T, D)`` token tensors.

    An embedding network maps each token to the space where neighbours are matched; a
    temperature network gives each token its own positive temperature
    ``t = temperature_bias · exp(log_t)``. :func:`~n3seq.knn_aggregate` (query excluded) then
    forms k soft neighbours of every token from the block's input, and the output is
    ``[x, x̂₁ − x, …, x̂ₖ − x]`` concatenated on the last dim.

    Args:
        dim: token feature size D.
        k: number of neighbours.
        embed_dim: size of the matching embedding (default: ``dim``).
        hidden: hidden width of the default MLPs (default: ``max(2·dim, 16)``).
        embedding: any module ``(B, T, D) → (B, T, E)``; replaces the default MLP.
        temperature_net: any module ``(B, T, D) → (B, T, 1)`` producing ``log_t``;
            ``None`` builds the default MLP, ``False`` uses a fixed temperature.
        temperature_bias: the scale of the temperature (the paper uses 0.1).
        radius: ``None`` to search the whole set, or the radius of a 1-D window of tokens.
        differences: output ``x̂ⱼ − x`` (the paper) or the raw neighbours ``x̂ⱼ``.

    Shape:
        - input: :math:`(B, T, D)`, optional key padding ``mask`` :math:`(B, T)` (with
          ``radius``, sequences must be right-padded: ``True`` for a prefix of each row;
          this is checked)
        - output: :math:`(B, T, (k + 1) D)`; empty for B = 0 or T = 0

    Padded tokens are replaced by zeros before the embedding: their content (NaN included)
    never matters, and the output at padded positions is that of a zero token. The
    temperature ``temperature_bias · exp(log_t)`` is clamped to float32's normal range, so a
    collapsing ``log_t`` gives the hard kNN limit with zero gradient instead of NaN.

    Raises:
        TypeError: for a non-int ``dim``/``k``/``embed_dim``/``hidden``/``radius``, a
            non-real ``temperature_bias``, a non-bool ``differences``, a non-module
            ``embedding``/``temperature_net``; in ``forward`` for a non-floating ``x`` or a
            non-bool ``mask``.
        ValueError: for values out of range (``dim``, ``k``, ``radius`` with
            ``2·radius < k``, ``temperature_bias <= 0``); in ``forward`` for a wrong shape,
            NaN/inf in ``x`` at real tokens (naming the first index), too few real tokens,
            or, with ``radius``, a mask that is not right-padded.
        OverflowError: when ``|x|`` is so large that ``x̂ − x`` would overflow its dtype.
        RuntimeError: from ``torch.jit.script`` (not supported; use ``torch.compile``).

    Example:
        >>> block = N3Block(dim=16, k=4)
        >>> block(torch.randn(2, 50, 16)).shape
        torch.Size([2, 50, 80])
    """

    def __init__(
        self,
        dim: int,
        k: int = 7,
        *,
        embed_dim: int | None = None,
        hidden: int | None = None,
        embedding: nn.Module | None = None,
        temperature_net: nn.Module | bool | None = None,
        temperature_bias: float = 0.1,
        radius: int | None = None,
        differences: bool = True,
    ) -> None:
        super().__init__()
        dim = check_int("dim", dim, min=1)
        k = check_k(k)
        embed_dim = check_optional_int("embed_dim", embed_dim, min=1)
        hidden = check_optional_int("hidden", hidden, min=1)
        temperature_bias = check_real("temperature_bias", temperature_bias, positive=True)
        radius = check_optional_int("radius", radius, min=1)
        differences = check_bool("differences", differences)
        if radius is not None and 2 * radius < k:
            raise ValueError(f"radius must be >= 1 and give 2*radius >= k={k} candidates besides "
                             f"the token itself, got {radius}")
        if embedding is not None and not isinstance(embedding, nn.Module):
            raise TypeError(f"embedding must be an nn.Module or None, got "
                            f"{type(embedding).__name__}")
        if not (temperature_net is None or isinstance(temperature_net, (bool, nn.Module))):
            raise TypeError(f"temperature_net must be an nn.Module, None, True or False, got "
                            f"{type(temperature_net).__name__}")
        embed_dim = embed_dim if embed_dim is not None else dim
        hidden = hidden if hidden is not None else max(2 * dim, 16)
        self.dim, self.k, self.radius, self.differences = dim, k, radius, differences
        self.temperature_bias = temperature_bias
        self.embedding = embedding if embedding is not None else mlp(dim, hidden, embed_dim)
        if temperature_net is None or temperature_net is True:
            temperature_net = mlp(dim, hidden, 1)
            # Start at t = temperature_bias: log_t = 0 for every token.
            nn.init.zeros_(temperature_net[-1].weight)
            nn.init.zeros_(temperature_net[-1].bias)
        self.temperature_net = temperature_net or None

    @property
    def out_dim(self) -> int:
        """Feature size of the output, ``(k + 1)·dim``."""
        return (self.k + 1) * self.dim

    def temperature(self, x: Tensor) -> Tensor:
        """Per-token temperature ``(B, T)`` for input ``x``.

        ``temperature_bias · exp(log_t)`` in float32 (float64 for float64 ``x``), clamped to
        the dtype's normal range: a collapsing ``log_t`` gives the smallest normal
        temperature (hard kNN, zero gradient) instead of 0, a huge one the largest.
        """
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        info = torch.finfo(dtype)
        if self.temperature_net is None:
            t = torch.full(x.shape[:2], self.temperature_bias, dtype=dtype, device=x.device)
        else:
            log_t = self.temperature_net(x)
            check_floating(log_t, "the temperature_net output")
            if tuple(log_t.shape) != (*x.shape[:2], 1):
                raise ValueError(f"temperature_net must map (B, T, D) to (B, T, 1), got "
                                 f"{tuple(log_t.shape)} for x {tuple(x.shape)}")
            # Clamped before exp: an exp that overflowed to inf would turn the zero gradient
            # of a clamp after it into NaN (0 · inf) in the backward pass.
            log_bias = math.log(self.temperature_bias)
            low, high = math.log(info.tiny) - log_bias, math.log(info.max) - log_bias
            t = self.temperature_bias * log_t[..., 0].to(dtype).clamp(low, high).exp()
        return t.clamp(min=info.tiny, max=info.max)

    @meta_aware
    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        check_floating(x, "x")
        check_rank(x, "x", "B, T, D")
        check_module_input(self, x, "x", "N3Block")
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have D={self.dim} features, got shape {tuple(x.shape)}")
        b, n, _ = x.shape
        if mask is not None:
            check_mask(mask, "mask", (b, n), "B, T")
            mask = mask.expand(b, n)
        if b * n == 0:
            out = x.new_zeros(b, n, self.out_dim)
            return out + x.sum() * 0 if torch.is_grad_enabled() else out
        lengths = self._check(x, mask)
        if mask is not None:  # padding never matters: a padded token is a zero token
            x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        emb = self.embedding(x)
        check_floating(emb, "the embedding of x")
        if emb.dim() != 3 or emb.shape[:2] != x.shape[:2]:
            raise ValueError(f"the embedding network must map (B, T, D) to (B, T, E), got "
                             f"{tuple(emb.shape)} for x {tuple(x.shape)}")
        candidates = None
        if self.radius is not None:
            # Right-padded sequences: keep each window inside its own sequence.
            candidates = _window_candidates(n, self.radius, lengths, x.device)
        neighbours = _knn_aggregate(emb, emb, x, self.k, self.temperature(x), candidates, mask,
                                    True, None, names=_NAMES)
        return n3_output(x, neighbours.to(x.dtype), self.differences)

    def _check(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        """Values and mask layout in one host sync; returns the lengths for windows."""
        lengths = None if mask is None else mask.sum(-1)
        where = None if mask is None else mask[..., None]
        if not data_checks():
            if tracing():
                check_finite(x, "x", where)
            return lengths
        scalars = [masked_abs(x, where).amax()]
        if lengths is not None:
            prefix = torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]
            scalars += [lengths.min(), (prefix == mask).all()]
        x_max, *layout = fetch(*scalars)
        if not math.isfinite(x_max):
            raise_non_finite(x, "x", where, "real tokens" if where is not None else None)
        info = torch.finfo(x.dtype)
        if self.differences and x_max > info.max / 2:
            raise OverflowError(
                f"x reaches |{x_max:.3g}|: the differences x̂ − x of the output can overflow "
                f"{x.dtype} (max {info.max:.3g}); scale x down or use differences=False"
            )
        need = self.k + 1 if self.radius is None else 2 * self.radius + 1
        if layout:
            shortest, is_prefix = layout
            if self.radius is not None and not is_prefix:
                row = int((prefix != mask).any(-1).nonzero()[0])
                raise ValueError(
                    f"mask row {row} is not right-padded: with radius, each row must be True "
                    f"for its first tokens and False after them (padding at the end only)"
                )
            if shortest < need:
                row = int((lengths == shortest).nonzero()[0])
                what = (f"the window 2*radius+1={need}" if self.radius is not None
                        else f"k+1={need} (k neighbours besides the token itself)")
                raise ValueError(f"mask row {row} has {int(shortest)} real token(s), fewer than "
                                 f"{what}")
        elif x.shape[1] < need:
            what = (f"the window 2*radius+1={need}" if self.radius is not None
                    else f"k+1={need} (k neighbours besides the token itself)")
            raise ValueError(f"x has T={x.shape[1]} tokens, fewer than {what}")
        return lengths

    def __prepare_scriptable__(self) -> nn.Module:
        raise RuntimeError(SCRIPT_UNSUPPORTED.format(type(self).__name__))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, k={self.k}, radius={self.radius}, "
                f"temperature_bias={self.temperature_bias}, differences={self.differences}")
