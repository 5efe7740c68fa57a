"""Real series that ship with statsmodels, split in time and standardised with train stats."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SeriesSplit:
    """A series split in time: ``train`` then ``test``, standardised with train statistics.

    Attributes:
        name: dataset name.
        train: standardised training part ``(T_train, C)`` (float32).
        test: standardised test part ``(T_test, C)``, the steps right after ``train``.
        mean: train mean per channel (original units).
        std: train standard deviation per channel (original units).
        period: seasonal period in steps (for seasonal-naive forecasts).
    """

    name: str
    train: np.ndarray
    test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    period: int


def load_co2() -> np.ndarray:
    """Weekly atmospheric CO₂ at Mauna Loa, 1958–2001 (``statsmodels.datasets.co2``).

    The 59 missing weeks are filled by linear interpolation in time.

    Returns:
        Array ``(2284, 1)`` in ppm.
    """
    from statsmodels.datasets import co2

    frame = co2.load_pandas().data
    values = frame["co2"].interpolate(method="time").bfill().to_numpy(dtype=np.float64)
    return values[:, None]


def load_sunspots() -> np.ndarray:
    """Yearly sunspot numbers, 1700–2008 (``statsmodels.datasets.sunspots``).

    Returns:
        Array ``(309, 1)``.
    """
    from statsmodels.datasets import sunspots

    return sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(dtype=np.float64)[:, None]


def load_taylor() -> np.ndarray:
    """Half-hourly electricity demand of England and Wales, 5 June – 27 August 2000 (Taylor,
    2003), from ``pmdarima.datasets.load_taylor`` (shipped with the package, read offline).

    The classic double-seasonal series: a daily (48 steps) and a weekly (336 steps) season.

    Returns:
        Array ``(4032, 1)`` in megawatts.
    """
    from pmdarima.datasets import load_taylor as _load

    return np.asarray(_load(as_series=False), dtype=np.float64)[:, None]


DATASETS = {"co2": (load_co2, 52), "sunspots": (load_sunspots, 11), "taylor": (load_taylor, 336)}


def split_in_time(series: np.ndarray, test_fraction: float = 0.2) -> tuple[np.ndarray, ...]:
    """Splits ``(T, C)`` into its first ``1 − f`` and last ``f`` part (no shuffling).

    Returns:
        ``(train, test, mean, std)``: both parts standardised by the train mean and std.
    """
    if series.ndim != 2:
        raise ValueError(f"series must have shape (T, C), got {series.shape}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    cut = round(len(series) * (1 - test_fraction))
    if cut < 2 or cut >= len(series):
        raise ValueError(f"test_fraction={test_fraction} leaves no train or test steps for "
                         f"T={len(series)}")
    train, test = series[:cut], series[cut:]
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(
        np.float32), mean, std


def load_split(name: str, test_fraction: float = 0.2) -> SeriesSplit:
    """Loads ``"co2"``, ``"sunspots"`` or ``"taylor"``, split in time (:func:`split_in_time`)."""
    if name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got {name!r}")
    load, period = DATASETS[name]
    train, test, mean, std = split_in_time(load(), test_fraction)
    return SeriesSplit(name, train, test, mean, std, period)
