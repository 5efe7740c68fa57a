"""Forecasting the next H steps with a :class:`~n3seq.timeseries.SeriesModel`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from n3seq._checks import check_floating, check_rank
from n3seq.timeseries.windows import check_finite_where, check_padding_mask


def forecast(model: nn.Module, history: Tensor, horizon: int, mask: Tensor | None = None, *,
             base: Tensor | None = None,
             return_quantiles: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
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
        base: for a hybrid model (``use_base=True``), the classical forecast ``(B, H, C)`` of
            the same steps (its base on the history is the history itself, as in
            :func:`~n3seq.timeseries.peer_predict`).
        return_quantiles: also return the model's quantiles ``(B, H, C, Q)`` (None if it
            has none).

    Returns:
        Forecast ``(B, H, C)`` (and the quantiles if ``return_quantiles``).

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
    index = lengths[:, None] + torch.arange(horizon, device=history.device)[None]
    index = index[..., None].expand(-1, -1, c)
    kwargs = {}
    if base is not None:
        check_floating(base, "base")
        if tuple(base.shape) != (b, horizon, c):
            raise ValueError(f"base must be the classical forecast (B, H, C) = "
                             f"{(b, horizon, c)}, got {tuple(base.shape)}")
        kwargs["base"] = series.scatter(1, index, base.to(series.dtype))
    full_mask = steps < (lengths + horizon)[:, None]
    full_mask = full_mask if mask is not None else None
    if return_quantiles:
        out, quant = model.predict(series, observed, full_mask, **kwargs)
        if quant is not None:
            q = quant.shape[-1]
            quant = quant.gather(1, index[..., None].expand(-1, -1, -1, q))
        return out.gather(1, index), quant
    out = model(series, observed, full_mask, **kwargs)
    return out.gather(1, index)
