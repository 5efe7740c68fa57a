"""Classical peers from statsmodels (and TBATS), configured on the training span only.

Every peer works on one univariate series (a 1-D NumPy array in the standardised units of
:func:`~n3seq.timeseries.load_split`) and offers some of three operations:

- ``forecast(history, horizon)``: the ``horizon`` steps after ``history``;
- ``impute(series)``: ``series`` with its NaN points filled in (observed points returned as
  they are);
- ``denoise(series)``: the smoothed signal of a noisy, fully observed series.

:meth:`Peer.fit` sees only the training span: it chooses a configuration (an order, a number
of harmonics) and estimates the parameters; applying the fitted peer to a test episode runs its
filter/smoother with those parameters fixed (state-space peers), or refits the method on the
episode's own context (Holt-Winters, STL: what a user of these methods does). No peer looks at
the test span. :func:`peer_predict` applies a peer to a padded episode batch of
:func:`~n3seq.timeseries.make_episode`.

Needs ``statsmodels`` (the ``timeseries`` extra); :class:`TBATSPeer` also needs ``tbats``.

Example:
    >>> import numpy as np
    >>> train = np.sin(np.arange(200) * 2 * np.pi / 12)
    >>> peer = StateSpacePeer("ar2", order=(2, 0, 0)).fit(train)
    >>> peer.forecast(train, 3).shape
    (3,)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor

from n3seq.timeseries.tasks import check_task


@contextmanager
def _quiet() -> Iterator[None]:
    """Silences statsmodels' convergence and frequency warnings (peers run many fits)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _as_series(x: np.ndarray, name: str, *, nan_ok: bool = False) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"{name} must be a 1-D series of >= 2 steps, got shape {x.shape}")
    bad = np.isinf(x) if nan_ok else ~np.isfinite(x)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s) (first at index "
                         f"{first}, value {x[first]})")
    return x


class Peer:
    """A classical method with the operations it supports (see the module docstring).

    Attributes:
        name: label in tables.
        tasks: the tasks it supports (a subset of ``("denoise", "impute", "forecast")``).
    """

    name = "peer"
    tasks: tuple[str, ...] = ()

    def fit(self, train: np.ndarray) -> Peer:
        """Chooses the configuration and estimates the parameters on ``train`` only."""
        return self

    def forecast(self, history: np.ndarray, horizon: int) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not forecast")

    def impute(self, series: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not impute")

    def denoise(self, series: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not denoise")

    def fitted(self, series: np.ndarray) -> np.ndarray:
        """In-sample predictions at the observed (non-NaN) steps of ``series``, made without
        the value itself (one-step-ahead or one-season-back); the values themselves where the
        method has none. A hybrid sees them to learn where the method tends to err."""
        return np.asarray(series, dtype=np.float64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


#: :meth:`StateSpacePeer.fitted` keeps a one-step prediction only where its variance is at most
#: this many times its median over the series (a standard deviation 10× the typical one).
UNINFORMATIVE_VARIANCE_RATIO = 100.0


class StateSpacePeer(Peer):
    """A statsmodels state-space model: ``SARIMAX`` or ``UnobservedComponents``.

    The parameters are estimated once by maximum likelihood on the training span; on an
    episode the Kalman filter (forecasts) or smoother (imputation, denoising; missing values
    are handled natively) runs with those parameters fixed.

    Args:
        name: label in tables.
        kind: ``"sarimax"`` or ``"uc"``.
        measurement_error: for denoising, add an observation-noise term (SARIMAX) — fit the
            peer on a *noisy* copy of the training span then. UC always has its irregular term.
        **spec: model keywords (``order``, ``seasonal_order``, ``trend`` for SARIMAX;
            ``level``, ``freq_seasonal``, ``autoregressive`` … for UC).
    """

    tasks = ("denoise", "impute", "forecast")

    def __init__(self, name: str, kind: str = "sarimax", *, measurement_error: bool = False,
                 **spec: Any) -> None:
        if kind not in ("sarimax", "uc"):
            raise ValueError(f"kind must be 'sarimax' or 'uc', got {kind!r}")
        self.name, self.kind, self.spec = name, kind, dict(spec)
        if kind == "sarimax" and measurement_error:
            self.spec["measurement_error"] = True
        self.params: np.ndarray | None = None
        self.aic = float("nan")

    def _model(self, y: np.ndarray) -> Any:
        if self.kind == "uc":
            from statsmodels.tsa.statespace.structural import UnobservedComponents

            return UnobservedComponents(y, **self.spec)
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        return SARIMAX(y, **self.spec)

    def fit(self, train: np.ndarray) -> StateSpacePeer:
        with _quiet():
            result = self._model(_as_series(train, "train", nan_ok=True)).fit(disp=False)
        self.params, self.aic = np.asarray(result.params), float(result.aic)
        return self

    def _run(self, y: np.ndarray, smooth: bool) -> Any:
        if self.params is None:
            raise RuntimeError(f"{self.name}: call fit(train) first")
        with _quiet():
            model = self._model(y)
            return model.smooth(self.params) if smooth else model.filter(self.params)

    def forecast(self, history: np.ndarray, horizon: int) -> np.ndarray:
        history = _as_series(history, "history", nan_ok=True)
        with _quiet():
            return np.asarray(self._run(history, smooth=False).forecast(horizon))

    def signal(self, series: np.ndarray) -> np.ndarray:
        """The smoothed signal ``E[Z·state + d | all observations]`` at every step."""
        result = self._run(_as_series(series, "series", nan_ok=True), smooth=True)
        return np.asarray(result.smoother_results.smoothed_forecasts[0])

    def impute(self, series: np.ndarray) -> np.ndarray:
        series = _as_series(series, "series", nan_ok=True)
        return np.where(np.isnan(series), self.signal(series), series)

    def fitted(self, series: np.ndarray) -> np.ndarray:
        """One-step-ahead predictions of the Kalman filter; the values themselves where the
        filter has no informative prediction yet: during the diffuse start-up, and where the
        prediction's variance exceeds :data:`UNINFORMATIVE_VARIANCE_RATIO` times its median
        over the series (the first steps of an approximately diffuse start, the steps after a
        long gap early in a series, whose predictions can be off by hundreds of standard
        deviations)."""
        series = _as_series(series, "series", nan_ok=True)
        result = self._run(series, smooth=False)
        out = np.asarray(result.forecasts[0]).copy()
        burn = max(int(getattr(result, "nobs_diffuse", 0) or 0),
                   int(getattr(result, "loglikelihood_burn", 0) or 0), 1)
        variance = np.asarray(result.forecasts_error_cov[0, 0], dtype=np.float64)
        known = ~np.isnan(series) & np.isfinite(variance)
        if known.any():
            limit = UNINFORMATIVE_VARIANCE_RATIO * np.median(variance[known])
            vague = ~(variance <= limit)  # NaN variance counts as vague
            out[vague] = series[vague]
        out[:burn] = series[:burn]
        return out

    def denoise(self, series: np.ndarray) -> np.ndarray:
        return self.signal(_as_series(series, "series"))


def select_by_aic(train: np.ndarray, candidates: list[Peer]) -> Peer:
    """The candidate whose ``train_aic(train)`` is lowest (Holt-Winters, STL configurations).

    Only AICs of fits to the same data compare: use candidates of one method.
    """
    if not candidates:
        raise ValueError("candidates must not be empty")
    aics = [float(peer.train_aic(train)) for peer in candidates]
    return candidates[int(np.nanargmin(np.where(np.isfinite(aics), aics, np.nan)))]


def select_state_space(train: np.ndarray, candidates: list[StateSpacePeer],
                       name: str | None = None) -> StateSpacePeer:
    """Fits every candidate on ``train`` and returns the one with the lowest AIC.

    Candidates must be fitted on the same data (same differencing) for AICs to compare.
    """
    if not candidates:
        raise ValueError("candidates must not be empty")
    fitted = [peer.fit(train) for peer in candidates]
    best = min(fitted, key=lambda peer: peer.aic if np.isfinite(peer.aic) else np.inf)
    if name is not None:
        best.name = name
    return best


class HoltWinters(Peer):
    """Holt-Winters exponential smoothing, refitted on each episode's context.

    Args:
        period: seasonal period (``None`` for no season).
        trend: ``None``, ``"add"`` or ``"add_damped"``.
        seasonal: ``"add"`` or ``"mul"`` (ignored without a period).
    """

    tasks = ("forecast",)

    def __init__(self, period: int | None, trend: str | None = "add",
                 seasonal: str = "add") -> None:
        if trend not in (None, "add", "add_damped"):
            raise ValueError(f"trend must be None, 'add' or 'add_damped', got {trend!r}")
        self.period, self.trend, self.seasonal = period, trend, seasonal
        parts = ["Holt-Winters", {None: "no trend", "add": "additive trend",
                                  "add_damped": "damped trend"}[trend]]
        if period:
            parts.append(f"{'additive' if seasonal == 'add' else 'multiplicative'} season "
                         f"{period}")
        self.name = ", ".join(parts)

    def _fit(self, history: np.ndarray) -> Any:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        season = self.period if self.period and len(history) >= 2 * self.period else None
        with _quiet():
            model = ExponentialSmoothing(
                history, trend="add" if self.trend else None,
                damped_trend=self.trend == "add_damped",
                seasonal=self.seasonal if season else None, seasonal_periods=season,
                initialization_method="estimated")
            return model.fit()

    def train_aic(self, train: np.ndarray) -> float:
        """AIC of this configuration fitted on ``train`` (to choose among configurations)."""
        return float(self._fit(_as_series(train, "train")).aic)

    def forecast(self, history: np.ndarray, horizon: int) -> np.ndarray:
        result = self._fit(_as_series(history, "history"))
        with _quiet():
            return np.asarray(result.forecast(horizon))


class STLPeer(Peer):
    """``STLForecast``: STL decomposition, an ARIMA on the seasonally adjusted series.

    Refitted on each episode's context (the season is repeated, the ARIMA forecasts the rest).

    Args:
        period: seasonal period.
        order: ARIMA order of the adjusted series.
        trend: ARIMA trend (``"t"`` = drift with ``d = 1``).
        robust: robust STL (about 6x slower for long seasons).
    """

    tasks = ("forecast",)

    def __init__(self, period: int, order: tuple[int, int, int] = (1, 1, 0),
                 trend: str | None = "t", robust: bool = True) -> None:
        self.period, self.order, self.trend, self.robust = period, tuple(order), trend, robust
        self.name = (f"STLForecast ({period}{'' if robust else ', not robust'}), "
                     f"ARIMA{self.order}" + {"t": " + drift", "c": " + constant"}.get(trend, ""))

    def _fit(self, history: np.ndarray) -> Any:
        from statsmodels.tsa.arima.model import ARIMA
        from statsmodels.tsa.forecasting.stl import STLForecast

        with _quiet():
            model = STLForecast(history, ARIMA, period=self.period, robust=self.robust,
                                model_kwargs={"order": self.order, "trend": self.trend})
            return model.fit()

    def train_aic(self, train: np.ndarray) -> float:
        """AIC of the ARIMA on the adjusted ``train`` (to choose among configurations)."""
        return float(self._fit(_as_series(train, "train")).model_result.aic)

    def forecast(self, history: np.ndarray, horizon: int) -> np.ndarray:
        result = self._fit(_as_series(history, "history"))
        with _quiet():
            return np.asarray(result.forecast(horizon))


class SeasonalNaivePeer(Peer):
    """Repeats the last season (forecasts) or fills a gap from one season earlier (imputation,
    falling back to linear interpolation where that is missing too)."""

    tasks = ("impute", "forecast")

    def __init__(self, period: int) -> None:
        self.period = period
        self.name = f"seasonal naive ({period})"

    def forecast(self, history: np.ndarray, horizon: int) -> np.ndarray:
        history = _as_series(history, "history")
        h = np.arange(horizon)
        return history[len(history) + h - self.period * ((h + self.period) // self.period)]

    def fitted(self, series: np.ndarray) -> np.ndarray:
        """The value one season earlier (the value itself in the first season or where that
        one is missing)."""
        series = _as_series(series, "series", nan_ok=True)
        out = series.copy()
        back = series[:-self.period] if len(series) > self.period else series[:0]
        out[self.period:] = np.where(np.isnan(back), series[self.period:], back)
        return out

    def impute(self, series: np.ndarray) -> np.ndarray:
        series = _as_series(series, "series", nan_ok=True).copy()
        missing = np.flatnonzero(np.isnan(series))
        for t in missing:
            if t >= self.period and not np.isnan(series[t - self.period]):
                series[t] = series[t - self.period]
        left = np.isnan(series)
        if left.any():
            steps = np.arange(len(series))
            series[left] = np.interp(steps[left], steps[~left], series[~left])
        return series


def _level_shift(series: np.ndarray, here: np.ndarray, there: np.ndarray) -> float:
    """Mean of ``series[here] - series[there]`` over the pairs observed on both sides (0 if
    none): how far the level has moved between two sets of corresponding steps."""
    inside = (here >= 0) & (here < len(series)) & (there >= 0) & (there < len(series))
    diff = series[here[inside]] - series[there[inside]]
    diff = diff[~np.isnan(diff)]
    return float(diff.mean()) if len(diff) else 0.0


class SeasonalLevelPeer(Peer):
    """Seasonal naive with the level re-anchored: the values one season away, shifted by how far
    the series has moved since, measured on the ``m`` observed steps next to the target.

    - ``forecast``: the last season repeated (as :class:`SeasonalNaivePeer`), plus the mean
      difference between the last ``m`` steps and the same steps one season earlier.
    - ``impute``: every gap (run of missing steps) is the mean of its analogs one season
      earlier and one season later (the nearest fully observed ones, up to three seasons
      away), each shifted by the level difference between the ``m`` steps on either side of
      the gap and the same steps around the analog. Gaps with no analog fall back to
      :class:`SeasonalNaivePeer`.

    :meth:`fit` chooses ``m`` among ``level_steps`` by the MSE of one-season-ahead forecasts
    from origins spread over the training span.

    Args:
        period: seasonal period P.
        level_steps: candidates for ``m`` (those above P are ignored).
    """

    tasks = ("impute", "forecast")

    def __init__(self, period: int, level_steps: tuple[int, ...] = (1, 3, 6, 12, 24)) -> None:
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        steps = tuple(m for m in level_steps if 1 <= m <= period)
        if not steps:
            raise ValueError(f"level_steps must hold a value in [1, period={period}], got "
                             f"{level_steps}")
        self.period, self.level_steps, self.m = period, steps, steps[0]
        self._naive = SeasonalNaivePeer(period)
        self.name = f"seasonal naive + level ({period})"

    def fit(self, train: np.ndarray) -> SeasonalLevelPeer:
        train = _as_series(train, "train")
        p = self.period
        first = p + max(self.level_steps)
        origins = np.arange(first, len(train) - p + 1)
        if len(origins) == 0:
            raise ValueError(f"train has {len(train)} steps; choosing the level window needs "
                             f">= {first + p} (two seasons and the largest level window)")
        origins = origins[np.linspace(0, len(origins) - 1, min(len(origins), 200)).astype(int)]
        errors = []
        for m in self.level_steps:
            self.m = m
            errors.append(np.mean([np.mean((self.forecast(train[:o], p) - train[o:o + p]) ** 2)
                                   for o in origins]))
        self.m = self.level_steps[int(np.argmin(errors))]
        self.name = f"seasonal naive + level ({self.period}, m = {self.m})"
        return self

    def _shifts(self, series: np.ndarray) -> np.ndarray:
        """``shift[t]`` for t = 0 … T: the mean of ``series[s] - series[s - P]`` over the
        observed s in ``[t - m, t)`` (0 if none), the level change to add to the value one
        season before t."""
        p, m = self.period, self.m
        diff = np.full(len(series) + m, np.nan)  # m NaNs in front: windows before the start
        diff[m + p:] = series[p:] - series[:-p] if len(series) > p else diff[m + p:]
        windows = np.lib.stride_tricks.sliding_window_view(diff, m)  # window t: [t - m, t)
        known = ~np.isnan(windows)
        n = known.sum(axis=1)
        return np.where(n > 0, np.where(known, windows, 0.0).sum(axis=1) / np.maximum(n, 1), 0.0)

    def forecast(self, history: np.ndarray, horizon: int) -> np.ndarray:
        history = _as_series(history, "history")
        recent = history[-(self.m + self.period):]  # all the last shift depends on
        return self._naive.forecast(history, horizon) + self._shifts(recent)[-1]

    def fitted(self, series: np.ndarray) -> np.ndarray:
        """The value one season earlier shifted by the level difference of the ``m`` steps
        before (the value itself in the first season or where that one is missing)."""
        series = _as_series(series, "series", nan_ok=True)
        p = self.period
        back = np.full(len(series), np.nan)
        back[p:] = series[:-p] if len(series) > p else back[p:]
        return np.where(np.isnan(back), series, back + self._shifts(series)[:-1])

    def impute(self, series: np.ndarray) -> np.ndarray:
        series = _as_series(series, "series", nan_ok=True)
        out = series.copy()
        missing = np.isnan(series)
        edges = np.flatnonzero(np.diff(np.r_[0, missing.astype(np.int8), 0]))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            gap = np.arange(start, stop)
            around = np.r_[np.arange(start - self.m, start), np.arange(stop, stop + self.m)]
            analogs = []
            for sign in (-1, 1):
                for j in (1, 2, 3):
                    at = gap + sign * j * self.period
                    if at[0] >= 0 and at[-1] < len(series) and not missing[at].any():
                        shift = _level_shift(series, around, around + sign * j * self.period)
                        analogs.append(series[at] + shift)
                        break
            if analogs:
                out[gap] = np.mean(analogs, axis=0)
        return self._naive.impute(out) if np.isnan(out).any() else out


class SavitzkyGolayPeer(Peer):
    """Savitzky–Golay smoothing with the window and order that minimise the MSE on a noisy
    copy of the training span (noise of std ``noise``, seeded)."""

    tasks = ("denoise",)

    def __init__(self, noise: float, windows: range = range(5, 52, 2),
                 orders: range = range(1, 5), seed: int = 7) -> None:
        self.noise, self.windows, self.orders, self.seed = noise, windows, orders, seed
        self.window, self.order = 5, 2
        self.name = "Savitzky–Golay"

    def fit(self, train: np.ndarray) -> SavitzkyGolayPeer:
        from scipy.signal import savgol_filter

        clean = _as_series(train, "train")
        noisy = clean + self.noise * np.random.default_rng(self.seed).standard_normal(len(clean))
        pairs = [(w, o) for w in self.windows for o in self.orders if o < w <= len(clean)]
        self.window, self.order = min(pairs, key=lambda p: float(np.mean(
            (savgol_filter(noisy, *p) - clean) ** 2)))
        self.name = f"Savitzky–Golay ({self.window}, {self.order})"
        return self

    def denoise(self, series: np.ndarray) -> np.ndarray:
        from scipy.signal import savgol_filter

        series = _as_series(series, "series")
        return savgol_filter(series, min(self.window, len(series) - (len(series) % 2 == 0)),
                             self.order)


class TBATSPeer(Peer):
    """TBATS (the ``tbats`` package): trigonometric seasons, Box-Cox, ARMA errors.

    Fitted once on the training span; a forecast runs the fitted model's state from its initial
    state through the **whole** history given (so the history must start where the training
    span starts, as the experiment's forecast episodes for this peer do) and then forecasts.
    This gives TBATS more context than the episodes give the other methods.

    Args:
        seasonal_periods: e.g. ``(48, 336)`` for half-hourly data with daily and weekly seasons.
        **options: passed to ``tbats.TBATS`` (defaults: no Box-Cox, no trend, ARMA errors
            allowed, one job).
    """

    tasks = ("forecast",)

    def __init__(self, seasonal_periods: tuple[float, ...], **options: Any) -> None:
        self.seasonal_periods = tuple(seasonal_periods)
        self.options = {"use_box_cox": False, "use_trend": False, "use_arma_errors": True,
                        "n_jobs": 1, "show_warnings": False, **options}
        self.name = f"TBATS {self.seasonal_periods}"
        self.model: Any = None

    def fit(self, train: np.ndarray) -> TBATSPeer:
        from tbats import TBATS

        with _quiet():
            estimator = TBATS(seasonal_periods=list(self.seasonal_periods), **self.options)
            self.model = estimator.fit(_as_series(train, "train"))
        return self

    def forecast(self, history: np.ndarray, horizon: int) -> np.ndarray:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call fit(train) first")
        history = _as_series(history, "history")
        with _quiet():
            self.model._fit_to_observations(history, self.model.params.x0)
            out = np.asarray(self.model.forecast(steps=horizon))
        if not np.isfinite(out).all():
            raise RuntimeError(f"{self.name}: the fitted model diverged on this history")
        return out


def peer_predict(peer: Peer, episode: dict[str, Tensor], task: str,
                 fitted: bool = False) -> Tensor:
    """Applies ``peer`` to every series of a padded episode batch.

    Args:
        peer: a fitted peer supporting ``task``.
        episode: the dict of :func:`~n3seq.timeseries.make_episode` (``C = 1``).
        task: ``"denoise"``, ``"impute"`` or ``"forecast"``.
        fitted: at the observed steps, put the peer's in-sample predictions
            (:meth:`Peer.fitted`) instead of the inputs (imputation, forecasting): a hybrid's
            base then shows where the method errs.

    Returns:
        ``(B, T, 1)``: the peer's values at the scored points, the inputs (or the in-sample
        predictions) elsewhere.
    """
    check_task(task)
    if task not in peer.tasks:
        raise ValueError(f"{peer.name} does not support task {task!r}; it does {peer.tasks}")
    inputs = episode["inputs"]
    if inputs.shape[-1] != 1:
        raise ValueError(f"peers are univariate: inputs must have C=1, got {tuple(inputs.shape)}")
    out = inputs.detach().double().cpu().numpy().copy()
    observed = episode["observed"].cpu().numpy()
    lengths = episode["mask"].sum(-1).tolist()
    for b, length in enumerate(lengths):
        x, obs = out[b, :length, 0], observed[b, :length, 0]
        if task == "denoise":
            out[b, :length, 0] = peer.denoise(x)
        elif task == "impute":
            gappy = np.where(obs, x, np.nan)
            out[b, :length, 0] = peer.impute(gappy)
            if fitted:
                out[b, :length, 0] = np.where(obs, peer.fitted(gappy), out[b, :length, 0])
        else:
            known = int(obs.sum())
            if not obs[:known].all():
                raise ValueError(f"episode {b}: a forecast episode must observe a prefix")
            out[b, known:length, 0] = peer.forecast(x[:known], length - known)
            if fitted:
                out[b, :known, 0] = peer.fitted(x[:known])
    return torch.from_numpy(out).to(inputs.dtype)
