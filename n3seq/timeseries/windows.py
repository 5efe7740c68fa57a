"""Overlapping windows of a ``(B, T, C)`` series as tokens, and folding them back by averaging.

Padding convention: series of different lengths share a batch left-aligned, each padded at
the end; the padding ``mask`` ``(B, T)`` is ``True`` on real steps. Token j of a series with
L real steps is real iff ``j < num_windows(L, w, s)``, i.e. iff it is one of the windows the
series would be cut into on its own. Every real step is covered by a real token, and a token
that covers only padded steps is always padding; a token that starts after the last window
the series needs is padding too, even if it still overlaps real steps. With this rule (and
:func:`fold_windows` averaging only real tokens) a padded batch gives each series exactly the
result it would get alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from n3seq._checks import check_floating, check_rank, tracing


def _check_window(window: int, stride: int) -> None:
    for name, value in (("window", window), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if stride > window:
        raise ValueError(f"stride must be <= window so windows cover every step, got "
                         f"stride={stride} > window={window}")


def num_windows(length: int, window: int, stride: int) -> int:
    """Number of windows that cover ``length`` steps (the last one may run past the end).

    Example:
        >>> num_windows(10, 4, 2)
        4
    """
    _check_window(window, stride)
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    return 1 + math.ceil(max(length - window, 0) / stride)


def covered_length(length: int, window: int, stride: int) -> int:
    """Length the windows span, ``window + (N − 1)·stride >= length``."""
    return window + (num_windows(length, window, stride) - 1) * stride


def unfold_windows(x: Tensor, window: int, stride: int) -> Tensor:
    """Cuts a series into overlapping windows, one token per window.

    The series is zero-padded at the end so that the last window reaches the last step.

    Args:
        x: series ``(B, T, C)``.
        window: window length w.
        stride: step between window starts s (``1 <= s <= w``).

    Returns:
        Tokens ``(B, N, w·C)`` with ``N = 1 + ceil((T − w) / s)``; features are ordered
        time-major (``(w c)``).

    Shape:
        - x: :math:`(B, T, C)`
        - output: :math:`(B, N, w C)`

    Example:
        >>> unfold_windows(torch.randn(2, 10, 3), window=4, stride=2).shape
        torch.Size([2, 4, 12])
    """
    check_floating(x, "x")
    check_rank(x, "x", "B, T, C")
    total = covered_length(x.shape[1], window, stride)
    x = F.pad(x, (0, 0, 0, total - x.shape[1]))
    return rearrange(x.unfold(1, window, stride), "b n c w -> b n (w c)")


def fold_windows(tokens: Tensor, length: int, window: int, stride: int,
                 mask: Tensor | None = None) -> Tensor:
    """Inverse of :func:`unfold_windows`: puts windows back in place, averaging overlaps.

    Args:
        tokens: windows ``(B, N, w·C)`` in the layout of :func:`unfold_windows`.
        length: length T of the series to rebuild (N must equal ``num_windows(T, w, s)``).
        window: window length w.
        stride: window stride s.
        mask: optional token padding mask ``(B, N)`` (see :func:`window_mask`); padding
            tokens are left out of the average. Steps no real token covers are zero.

    Returns:
        Series ``(B, T, C)``; every step is the mean of all (real) windows that cover it.

    Shape:
        - tokens: :math:`(B, N, w C)`
        - output: :math:`(B, T, C)`

    Example:
        >>> x = torch.randn(2, 10, 3)
        >>> torch.allclose(fold_windows(unfold_windows(x, 4, 2), 10, 4, 2), x)
        True
    """
    check_floating(tokens, "tokens")
    check_rank(tokens, "tokens", "B, N, F")
    n = num_windows(length, window, stride)
    if tokens.shape[1] != n or tokens.shape[2] % window:
        raise ValueError(
            f"tokens must have shape (B, N, w*C) with N=num_windows({length}, {window}, "
            f"{stride})={n} and w*C divisible by w={window}, got {tuple(tokens.shape)}"
        )
    total = covered_length(length, window, stride)
    weight = tokens.new_ones(1, 1, n)
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or \
                tuple(mask.shape) != (tokens.shape[0], n):
            raise ValueError(f"mask must be a bool tensor of shape (B, N) = "
                             f"{(tokens.shape[0], n)}, got {getattr(mask, 'shape', mask)}")
        weight = mask[:, None, :].to(tokens.dtype)
    cols = rearrange(tokens, "b n (w c) -> b (c w) n", w=window) * weight
    kwargs = {"output_size": (1, total), "kernel_size": (1, window), "stride": (1, stride)}
    summed = F.fold(cols, **kwargs)
    count = F.fold(weight.expand(-1, window, -1).contiguous(), **kwargs)
    return rearrange(summed / count.clamp(min=1), "b c 1 t -> b t c")[:, :length]


def window_mask(mask: Tensor, window: int, stride: int) -> Tensor:
    """Padding mask of the window tokens of a left-aligned padded batch.

    Token j of a series with L real steps is real iff ``j < num_windows(L, w, s)`` (see the
    module docstring): exactly the tokens the series has when cut on its own.

    Args:
        mask: step padding mask ``(B, T)``, ``True`` = real step.
        window: window length w.
        stride: window stride s.

    Returns:
        Bool tensor ``(B, N)`` with ``N = num_windows(T, w, s)``.

    Example:
        >>> m = torch.tensor([[True] * 6 + [False] * 4])
        >>> window_mask(m, 4, 2)
        tensor([[ True,  True, False, False]])
    """
    if isinstance(mask, Tensor):
        check_rank(mask, "mask", "B, T")
    lengths = check_padding_mask(mask, tuple(mask.shape) if isinstance(mask, Tensor) else ())
    n = num_windows(mask.shape[1], window, stride)
    needed = 1 + torch.div((lengths - window).clamp(min=0) + stride - 1, stride,
                           rounding_mode="floor")
    return torch.arange(n, device=mask.device)[None] < needed[:, None]


def check_padding_mask(mask: Tensor, shape: tuple[int, int], name: str = "mask") -> Tensor:
    """Validates a left-aligned padding mask ``(B, T)`` and returns the lengths ``(B,)``.

    Raises:
        TypeError: if ``mask`` is not a bool tensor.
        ValueError: if its shape is not ``shape``, a series is empty, or a row has a real
            step after a padded one (real steps must come first).
    """
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{name} must be a bool tensor (True = real step), got {got}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape (B, T) = {tuple(shape)}, got "
                         f"{tuple(mask.shape)}")
    lengths = mask.sum(-1)
    if bool((lengths == 0).any()):
        row = int((lengths == 0).nonzero()[0])
        raise ValueError(f"{name} row {row} has no real step (empty series)")
    prefix = torch.arange(mask.shape[1], device=mask.device)[None] < lengths[:, None]
    if not bool((prefix == mask).all()):
        row = int((prefix != mask).any(-1).nonzero()[0])
        raise ValueError(f"{name} row {row} is not left-aligned: padding must only follow the "
                         f"real steps (use `observed` for missing values inside a series)")
    return lengths


def check_finite_where(x: Tensor, where: Tensor, name: str, what: str) -> None:
    """Raises if ``x`` has a NaN or ±inf at a point where ``where`` is True.

    Values elsewhere (padding, unobserved points) are ignored: their content never matters.

    Args:
        x: values.
        where: bool tensor broadcastable to ``x``: the points whose values are used.
        name: the argument's name, for the message.
        what: which points are checked (e.g. ``"real steps"``), for the message.

    Raises:
        ValueError: naming ``name``, the number of bad values, the first bad index and its
            value (``nan``, ``inf`` or ``-inf``).
    """
    if tracing():
        return
    bad = ~torch.isfinite(x) & where
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} contains {int(bad.sum())} non-finite value(s) at {what} "
                         f"(first at index {first}, value {float(x[first])}); values at "
                         f"padded or unobserved points are ignored")


class WindowTokens(nn.Module):
    """Module form of :func:`unfold_windows` / :func:`fold_windows` with fixed w and s.

    Args:
        window: window length w.
        stride: window stride s.

    Example:
        >>> tok = WindowTokens(8, 4)
        >>> x = torch.randn(1, 30, 2)
        >>> tok.fold(tok(x), 30).shape
        torch.Size([1, 30, 2])
    """

    def __init__(self, window: int, stride: int) -> None:
        super().__init__()
        _check_window(window, stride)
        self.window, self.stride = window, stride

    def forward(self, x: Tensor) -> Tensor:
        return unfold_windows(x, self.window, self.stride)

    def fold(self, tokens: Tensor, length: int) -> Tensor:
        """See :func:`fold_windows`."""
        return fold_windows(tokens, length, self.window, self.stride)

    def mask(self, mask: Tensor) -> Tensor:
        """See :func:`window_mask`."""
        return window_mask(mask, self.window, self.stride)

    def extra_repr(self) -> str:
        return f"window={self.window}, stride={self.stride}"
