"""Forecasting the next H steps with a :class:`~n3seq.timeseries.SeriesModel`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from n3seq._checks import check_floating, check_rank
from n3seq.timeseries.windows import check_finite_where, check_padding_mask


def forecast(model: nn.Module, history: Tensor, horizon: int,
             mask: Tensor | None = None) -> Tensor:
    """Predicts the ``horizon`` steps that follow each series of ``history``.

    The history is extended by ``horizon`` unobserved steps (right after each series' last
    real step, when a padding ``mask`` gives series of different lengths) and the model fills
    them in, exactly as in training with the ``"forecast"`` task.

    Args:
        model: a :class:`~n3seq.timeseries.SeriesModel` (or any module with its signature
            ``model(series, observed, mask)``).
        history: observed past ``(B, T, C)``.
        horizon: steps to predict H >= 1.
        mask: optional left-aligned padding mask ``(B, T)`` of the history.

    Returns:
        Forecast ``(B, H, C)``.

    Example:
        >>> from n3seq.timeseries import SeriesModel
        >>> model = SeriesModel(1, window=8, stride=4, width=16)
        >>> forecast(model, torch.randn(2, 100, 1), horizon=12).shape
        torch.Size([2, 12, 1])
    """
    check_floating(history, "history")
    check_rank(history, "history", "B, T, C")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
    b, t, c = history.shape
    lengths = (check_padding_mask(mask, (b, t)) if mask is not None
               else torch.full((b,), t, device=history.device))
    steps = torch.arange(t + horizon, device=history.device)[None]
    real = (steps[:, :t] < lengths[:, None])[..., None]
    check_finite_where(history, real, "history", "real steps")
    series = torch.cat([history, history.new_zeros(b, horizon, c)], dim=1)
    observed = (steps < lengths[:, None])[..., None].expand(b, -1, c)
    series = torch.where(observed, series, torch.zeros_like(series))  # padding never matters
    full_mask = steps < (lengths + horizon)[:, None]
    out = model(series, observed, full_mask if mask is not None else None)
    index = lengths[:, None] + torch.arange(horizon, device=history.device)[None]
    return out.gather(1, index[..., None].expand(-1, -1, c))
