"""Parsing noise levels (σ on the 0–255 scale); standard library only, for the command lines.

:func:`parse_sigma` is re-exported by :mod:`n3seq_image.data`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence


def parse_sigma(sigma: float | str | Sequence[float]) -> tuple[float, float]:
    """Parses a noise level on the 0–255 scale: ``25``, ``"1e-3"``, ``"0-55"`` or ``(0, 55)``.

    A range is written ``low-high`` or ``low:high``; numbers may use exponents (``"1e-3"``).

    Returns:
        ``(low, high)``; equal for a fixed σ.

    Raises:
        ValueError: σ is not a number, not finite, negative, above 255, or the range is
            reversed.
    """
    if isinstance(sigma, str):
        values = _parse_sigma_text(sigma)
    elif isinstance(sigma, bool):
        raise ValueError(f"sigma must be a number, got {sigma!r}")
    elif isinstance(sigma, numbers.Real):
        values = [float(sigma)]
    else:
        try:
            values = [float(s) for s in sigma]
        except (TypeError, ValueError):
            raise ValueError(
                f"sigma must be a number, a string or a (low, high) pair, got {sigma!r}"
            ) from None
    if len(values) == 1:
        value = values[0]
        if not math.isfinite(value) or not 0 <= value <= 255:
            raise ValueError(f"sigma must be a noise level in [0, 255] (0–255 scale), "
                             f"got {sigma!r}")
        return value, value
    if len(values) != 2:
        raise ValueError(f"sigma must be one value or a (low, high) range, got {sigma!r}")
    low, high = values
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high > 255 or low > high:
        raise ValueError(
            f"a sigma range must have 0 <= low <= high <= 255 (0–255 scale), got {sigma!r}"
        )
    return low, high


def _parse_sigma_text(text: str) -> list[float]:
    """``"25"`` → ``[25]``; ``"0-55"``, ``"0:55"``, ``"1e-3-5"`` → ``[low, high]``."""
    stripped = text.strip()
    try:
        return [float(stripped)]
    except ValueError:
        pass
    # A range: split at the first '-' or ':' (not a leading sign) where both sides are numbers.
    for i, char in enumerate(stripped):
        if char in "-:" and i > 0:
            try:
                return [float(stripped[:i]), float(stripped[i + 1 :])]
            except ValueError:
                continue
    raise ValueError(f"sigma must be a number or a range like '0-55', got {text!r}")
