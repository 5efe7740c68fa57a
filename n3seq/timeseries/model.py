"""Window-token networks for series: local 1-D conv stages around one N³ stage.

:class:`SeriesNet` maps ``(B, T, C_in) → (B, T, C_out)``; :class:`SeriesModel` wraps it for
the three tasks (denoising, imputation, forecasting): it normalises each series by the mean
and standard deviation of its observed steps, zero-fills missing values, appends the mask of
observed points as extra channels, and predicts the complete clean series.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from n3seq._checks import check_floating, check_rank, tracing
from n3seq.ablation import DenseResidual, N3Residual
from n3seq.timeseries.windows import (
    _check_window,
    check_finite_where,
    check_padding_mask,
    fold_windows,
    num_windows,
    unfold_windows,
    window_mask,
)

#: Smallest standard deviation a series is normalised by, relative to its largest |value|
#: (a constant series is not blown up).
MIN_RELATIVE_STD = 1e-6


class TokenConvStage(nn.Module):
    """Residual 1-D convolution over the window tokens: ``h + conv(relu(h))``, padding zeroed.

    (It was called ``LocalStage``, like a different class of the audio adapter.)
    """

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        z = torch.relu(h)
        if mask is not None:
            z = z * mask[..., None]
        return h + rearrange(self.conv(rearrange(z, "b n d -> b d n")), "b d n -> b n d")


#: Residual N³ stage over window tokens (global or a window kept inside each series).
SeriesN3Stage = N3Residual
#: The stand-in for :data:`SeriesN3Stage` in models without N³: ``h + Linear(relu(h))``.
DenseStage = DenseResidual


class SeriesNet(nn.Module):
    """Window tokens → local stages → N³ stage → local stages → windows folded back.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        window: window length w (steps per token).
        stride: window stride s (``s < w`` gives overlapping windows, averaged on folding).
        width: token features D.
        depth: local stages before and after the N³ stage.
        k: neighbours of the N³ stage.
        radius: ``None`` for N³ over all tokens of a series, else a window radius in tokens.
        use_n3: ``False`` replaces the N³ stage by :class:`DenseStage` (the ablation).
        kernel_size: kernel of the local convolutions over tokens.

    Shape:
        - x: :math:`(B, T, C_{in})`, optional padding ``mask`` :math:`(B, T)`
        - output: :math:`(B, T, C_{out})`, zero on padded steps

    Example:
        >>> net = SeriesNet(2, 1, window=8, stride=4, width=16)
        >>> net(torch.randn(3, 100, 2)).shape
        torch.Size([3, 100, 1])
    """

    def __init__(self, in_channels: int, out_channels: int, *, window: int = 8,
                 stride: int = 4, width: int = 32, depth: int = 2, k: int = 4,
                 radius: int | None = None, use_n3: bool = True, kernel_size: int = 3) -> None:
        super().__init__()
        _check_window(window, stride)
        if in_channels < 1 or out_channels < 1 or width < 1:
            raise ValueError(f"in_channels, out_channels and width must be >= 1, got "
                             f"{in_channels}, {out_channels}, {width}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.window, self.stride, self.use_n3 = window, stride, use_n3
        self.embed = nn.Linear(window * in_channels, width)
        self.pre = nn.ModuleList(TokenConvStage(width, kernel_size) for _ in range(depth))
        self.mid = SeriesN3Stage(width, k, radius) if use_n3 else DenseStage(width)
        self.post = nn.ModuleList(TokenConvStage(width, kernel_size) for _ in range(depth))
        self.head = nn.Linear(width, window * out_channels)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        check_floating(x, "x")
        check_rank(x, "x", "B, T, C")
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"x must have C={self.in_channels} channels, got shape "
                             f"{tuple(x.shape)}")
        length = x.shape[1]
        if length < self.window:
            raise ValueError(f"series length T={length} is shorter than window={self.window}")
        tok_mask = None
        if mask is not None:
            check_padding_mask(mask, tuple(x.shape[:2]))
            tok_mask = window_mask(mask, self.window, self.stride)
            x = torch.where(mask[..., None], x, torch.zeros_like(x))  # padding never matters
        check_finite_where(x, torch.ones_like(x, dtype=torch.bool), "x", "real steps")
        empty = x.shape[0] == 0
        if self.use_n3 and not empty and not tracing():
            self._check_tokens(length, tok_mask)
        h = self.embed(unfold_windows(x, self.window, self.stride))
        for stage in self.pre:
            h = stage(h, tok_mask)
        if not empty:  # an empty batch has no neighbours to search: output stays empty
            h = self.mid(h, tok_mask)
        for stage in self.post:
            h = stage(h, tok_mask)
        y = fold_windows(self.head(torch.relu(h)), length, self.window, self.stride, tok_mask)
        return y if mask is None else y * mask[..., None]

    def _check_tokens(self, length: int, tok_mask: Tensor | None) -> None:
        block = self.mid.block
        need = block.k + 1 if block.radius is None else 2 * block.radius + 1
        counts = [num_windows(length, self.window, self.stride)] if tok_mask is None else \
            tok_mask.sum(-1).tolist()
        if min(counts) < need:
            raise ValueError(
                f"a series has only {min(counts)} window tokens (window={self.window}, "
                f"stride={self.stride}), the N³ stage needs at least {need} (k={block.k}, "
                f"radius={block.radius}): use longer series or shorter windows"
            )


class SeriesModel(nn.Module):
    """Restores a complete, clean series from a noisy and/or partly observed one.

    One model serves the three tasks: denoising (everything observed), imputation (gaps
    unobserved) and forecasting (the last H steps unobserved). Each series is normalised by
    the mean and standard deviation of its observed real steps (per channel), missing values
    are zero-filled, and the ``observed`` mask is appended as C extra input channels; the net
    predicts a correction of the zero-filled normalised series, and the result is mapped back
    to the original scale.

    **Hybrid** (``use_base=True``): a classical method's prediction ``base`` (e.g. a Kalman
    smoother's imputation or a seasonal-naive forecast; :func:`~n3seq.timeseries.peer_predict`)
    is normalised like the series and appended as C more input channels, and the net predicts
    the correction of the *base* instead; its output layer starts at zero, so an untrained
    hybrid returns the base. With ``fill_from_base=True`` the unobserved steps of the value
    channel hold the (normalised) base instead of zeros, so that a gap or a horizon looks
    like the rest of the series to the local stages and to the N³ search (the mask channel
    still tells them apart): a day to forecast then finds the past days most like its
    classical forecast.

    **Quantiles**: with ``quantiles=(0.1, 0.9)`` the net also predicts those quantiles of every
    step (:meth:`predict`; train them with the pinball loss, as
    :func:`~n3seq.timeseries.fit_on_episodes` does); ``forward`` returns the point prediction.

    Args:
        channels: channels C of the series.
        use_base: take a classical prediction ``base`` as input and correct it.
        fill_from_base: fill the unobserved steps of the value channel with the base instead
            of zeros (needs ``use_base``).
        quantiles: levels in (0, 1) of the predicted quantiles (empty: none).
        **net_kwargs: passed to :class:`SeriesNet` (``window``, ``stride``, ``width``,
            ``depth``, ``k``, ``radius``, ``use_n3``, ``kernel_size``).

    Shape:
        - series: :math:`(B, T, C)`; values at unobserved points are ignored (may be NaN)
        - observed: optional bool :math:`(B, T, C)`, ``True`` = value known
        - mask: optional bool :math:`(B, T)` padding mask, ``True`` = real step
        - base: :math:`(B, T, C)`, needed iff ``use_base`` (finite at every real step)
        - output: :math:`(B, T, C)`, zero on padded steps

    Example:
        >>> model = SeriesModel(1, window=8, stride=4, width=16)
        >>> x = torch.randn(2, 64, 1)
        >>> observed = torch.ones(2, 64, 1, dtype=torch.bool)
        >>> observed[:, 20:30] = False
        >>> model(x, observed).shape
        torch.Size([2, 64, 1])
    """

    def __init__(self, channels: int, *, use_base: bool = False, fill_from_base: bool = False,
                 quantiles: tuple[float, ...] = (), **net_kwargs: Any) -> None:
        super().__init__()
        if fill_from_base and not use_base:
            raise ValueError("fill_from_base=True needs use_base=True (it fills the unobserved "
                             "steps with the base)")
        self.fill_from_base = bool(fill_from_base)
        quantiles = tuple(float(q) for q in quantiles)
        if any(not 0 < q < 1 for q in quantiles) or any(
                a >= b for a, b in itertools.pairwise(quantiles)):
            raise ValueError(f"quantiles must be increasing levels in (0, 1), got {quantiles}")
        self.channels, self.use_base, self.quantiles = channels, bool(use_base), quantiles
        self.net = SeriesNet((3 if self.use_base else 2) * channels,
                             channels * (1 + len(quantiles)), **net_kwargs)
        if self.use_base:
            nn.init.zeros_(self.net.head.weight)
            nn.init.zeros_(self.net.head.bias)

    def forward(self, series: Tensor, observed: Tensor | None = None,
                mask: Tensor | None = None, base: Tensor | None = None) -> Tensor:
        return self.predict(series, observed, mask, base)[0]

    def predict(self, series: Tensor, observed: Tensor | None = None,
                mask: Tensor | None = None,
                base: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The point prediction ``(B, T, C)`` and the quantiles ``(B, T, C, Q)`` (or None).

        Arguments as for :meth:`forward`.
        """
        check_floating(series, "series")
        check_rank(series, "series", "B, T, C")
        if series.shape[-1] != self.channels:
            raise ValueError(f"series must have C={self.channels} channels, got shape "
                             f"{tuple(series.shape)}")
        if observed is None:
            observed = torch.ones_like(series, dtype=torch.bool)
        elif not isinstance(observed, Tensor) or observed.dtype != torch.bool:
            got = observed.dtype if isinstance(observed, Tensor) else type(observed).__name__
            raise TypeError(f"observed must be a bool tensor (True = known value), got {got}")
        elif observed.shape != series.shape:
            raise ValueError(f"observed must have the shape of series (B, T, C) = "
                             f"{tuple(series.shape)}, got {tuple(observed.shape)}")
        real = torch.ones_like(series, dtype=torch.bool)
        if mask is not None:
            check_padding_mask(mask, tuple(series.shape[:2]))
            observed = observed & mask[..., None]
            real = real & mask[..., None]
        if self.use_base:
            if base is None:
                raise ValueError("this model has use_base=True: pass the classical prediction "
                                 "base (B, T, C)")
            check_floating(base, "base")
            if base.shape != series.shape:
                raise ValueError(f"base must have the shape of series (B, T, C) = "
                                 f"{tuple(series.shape)}, got {tuple(base.shape)}")
            check_finite_where(base, real, "base", "real steps")
        elif base is not None:
            raise ValueError("base was given but this model has use_base=False")
        check_finite_where(series, observed, "series", "observed real steps")
        known = observed.to(series.dtype)
        x = torch.where(observed, series, torch.zeros_like(series))
        # Statistics in units of the largest observed magnitude (per series and channel), so
        # that no square overflows or underflows: the model is equivariant to positive scaling.
        scale = x.detach().abs().amax(1, keepdim=True) if x.shape[1] else x.new_ones(
            x.shape[0], 1, x.shape[2])
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        x = x / scale
        count = known.sum(1, keepdim=True)
        mean = x.sum(1, keepdim=True) / count.clamp(min=1)
        var = ((x - mean).square() * known).sum(1, keepdim=True) / (count - 1).clamp(min=1)
        std = var.sqrt().clamp(min=MIN_RELATIVE_STD)
        std = torch.where(count > 1, std, torch.ones_like(std))
        z = (x - mean) / std * known
        inputs = [z, known]
        start = z
        if self.use_base:
            b = torch.where(real, base, torch.zeros_like(base)) / scale
            b = (b - mean) / std * real
            inputs.append(b)
            start = b
            if self.fill_from_base:
                inputs[0] = torch.where(observed, z, b)
        out = self.net(torch.cat(inputs, dim=-1), mask)
        c = self.channels
        y = start + out[..., :c]
        quant = None
        if self.quantiles:
            offsets = rearrange(out[..., c:], "b t (c q) -> b t c q", c=c)
            quant = (y[..., None] + offsets).sort(dim=-1).values
            quant = (quant * std[..., None] + mean[..., None]) * scale[..., None]
        y = (y * std + mean) * scale
        if not tracing() and not (bool(torch.isfinite(y).all()) and (
                quant is None or bool(torch.isfinite(quant).all()))):
            raise ValueError(
                f"the restored series overflows {series.dtype} (largest observed |value| "
                f"{float(scale.max()):.3g}): rescale the series, e.g. divide it by its scale"
            )
        if mask is not None:
            y = y * mask[..., None]
            quant = None if quant is None else quant * mask[..., None, None]
        return y, quant


def __getattr__(name: str) -> object:
    """Old names, kept for a while with a DeprecationWarning."""
    if name == "LocalStage":
        warnings.warn(f"{__name__}.LocalStage is deprecated: it was renamed TokenConvStage (the "
                      "audio and time-series adapters had two different classes of that name)",
                      DeprecationWarning, stacklevel=2)
        return TokenConvStage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
