"""Classical baselines: linear interpolation, seasonal-naive forecasts, smoothing filters."""

from __future__ import annotations

import numpy as np
import torch
from scipy.signal import savgol_filter
from torch import Tensor

from n3seq._checks import check_floating, check_rank


def linear_interpolation(series: Tensor, observed: Tensor) -> Tensor:
    """Fills unobserved points by linear interpolation between observed neighbours.

    Before the first and after the last observed point the nearest observed value is
    repeated. Observed points are returned unchanged.

    Args:
        series: ``(B, T, C)``.
        observed: bool ``(B, T, C)``; every (series, channel) needs an observed point.

    Returns:
        ``(B, T, C)``.

    Example:
        >>> x = torch.tensor([[[0.0], [9.0], [2.0]]])
        >>> linear_interpolation(x, torch.tensor([[[True], [False], [True]]]))[0, 1]
        tensor([1.])
    """
    check_floating(series, "series")
    check_rank(series, "series", "B, T, C")
    if observed.shape != series.shape or observed.dtype != torch.bool:
        raise ValueError(f"observed must be a bool tensor of shape {tuple(series.shape)}, got "
                         f"{observed.dtype} {tuple(observed.shape)}")
    x, obs = series.detach().cpu().double().numpy(), observed.cpu().numpy()
    out = x.copy()
    steps = np.arange(x.shape[1])
    for b in range(x.shape[0]):
        for c in range(x.shape[2]):
            known = obs[b, :, c]
            if not known.any():
                raise ValueError(f"series {b} channel {c} has no observed point")
            out[b, :, c] = np.interp(steps, steps[known], x[b, known, c])
    return torch.from_numpy(out).to(series)


def seasonal_naive(history: Tensor, horizon: int, period: int) -> Tensor:
    """Repeats the last observed season: ``ŷ[T + h] = y[T + h − P·⌈(h + 1)/P⌉]``.

    Args:
        history: ``(B, T, C)`` with ``T >= period``.
        horizon: steps to forecast H.
        period: season length P.

    Returns:
        Forecast ``(B, H, C)``.

    Example:
        >>> seasonal_naive(torch.arange(6.0).view(1, 6, 1), 4, 3)[0, :, 0]
        tensor([3., 4., 5., 3.])
    """
    check_floating(history, "history")
    check_rank(history, "history", "B, T, C")
    if horizon < 1 or period < 1:
        raise ValueError(f"horizon and period must be >= 1, got {horizon}, {period}")
    length = history.shape[1]
    if length < period:
        raise ValueError(f"history has T={length} steps, fewer than period={period}")
    h = torch.arange(horizon, device=history.device)
    index = length + h - period * torch.div(h + period, period, rounding_mode="floor")
    return history[:, index]


def moving_average(series: Tensor, window: int) -> Tensor:
    """Centred moving average of odd length ``window`` (the window shrinks at the ends).

    Shape:
        - series: :math:`(B, T, C)`; output: same.
    """
    check_floating(series, "series")
    check_rank(series, "series", "B, T, C")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be odd and >= 1, got {window}")
    half = window // 2
    padded = torch.nn.functional.pad(series.transpose(1, 2), (half, half))
    ones = torch.nn.functional.pad(torch.ones_like(series[:1, :, :1]).transpose(1, 2),
                                   (half, half))
    kernel = series.new_ones(1, 1, window)
    channels = series.shape[2]
    total = torch.nn.functional.conv1d(padded, kernel.expand(channels, 1, window),
                                       groups=channels)
    count = torch.nn.functional.conv1d(ones, kernel)
    return (total / count).transpose(1, 2)


def savitzky_golay(series: Tensor, window: int, order: int) -> Tensor:
    """Savitzky–Golay smoothing (:func:`scipy.signal.savgol_filter`, ``mode="interp"``).

    Shape:
        - series: :math:`(B, T, C)`; output: same.
    """
    check_floating(series, "series")
    check_rank(series, "series", "B, T, C")
    if not 0 <= order < window <= series.shape[1]:
        raise ValueError(f"need 0 <= order < window <= T, got order={order}, window={window}, "
                         f"T={series.shape[1]}")
    x = series.detach().cpu().double().numpy()
    return torch.from_numpy(savgol_filter(x, window, order, axis=1)).to(series)
