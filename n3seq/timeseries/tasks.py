"""Training and evaluation episodes for the three tasks: denoise, impute, forecast.

An episode is a dict of tensors: ``inputs`` ``(B, T, C)`` (what the model sees),
``observed`` ``(B, T, C)`` (bool, known values), ``mask`` ``(B, T)`` (bool padding mask),
``target`` ``(B, T, C)`` (the clean series) and ``score`` ``(B, T, C)`` (bool, the points
the task is judged on: every real step for denoising, the gaps for imputation, the last
``horizon`` real steps for forecasting).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

TASKS = ("denoise", "impute", "forecast")


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def gap_mask(lengths: Tensor, total: int, channels: int, num_gaps: int, min_gap: int,
             max_gap: int, generator: torch.Generator | None = None) -> Tensor:
    """Observed-points mask with ``num_gaps`` random missing segments per series.

    Gap lengths are uniform in ``[min_gap, max_gap]``; each gap lies inside the real steps
    and leaves at least one observed step before and after it. Gaps may overlap.

    Returns:
        Bool ``(B, T, C)``: False inside gaps and on padding.
    """
    if not 1 <= min_gap <= max_gap:
        raise ValueError(f"need 1 <= min_gap <= max_gap, got {min_gap}, {max_gap}")
    if bool((lengths < max_gap + 2).any()):
        raise ValueError(f"every series needs >= max_gap+2={max_gap + 2} steps, got lengths "
                         f"{lengths.tolist()}")
    steps = torch.arange(total)
    observed = steps[None] < lengths[:, None]
    for b, length in enumerate(lengths.tolist()):
        for _ in range(num_gaps):
            size = int(torch.randint(min_gap, max_gap + 1, (1,), generator=generator))
            start = int(torch.randint(1, length - size, (1,), generator=generator))
            observed[b, start:start + size] = False
    return observed[..., None].expand(-1, -1, channels).clone()


def forecast_mask(lengths: Tensor, total: int, channels: int, horizon: int) -> Tensor:
    """Observed-points mask hiding the last ``horizon`` real steps of each series."""
    if bool((lengths <= horizon).any()):
        raise ValueError(f"every series needs more than horizon={horizon} steps, got "
                         f"lengths {lengths.tolist()}")
    steps = torch.arange(total)[None]
    observed = steps < (lengths - horizon)[:, None]
    return observed[..., None].expand(-1, -1, channels).clone()


def make_episode(clean: Tensor, lengths: Tensor, task: str, *, noise: float = 0.1,
                 horizon: int = 8, gap: tuple[int, int] = (4, 16), num_gaps: int = 1,
                 generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Builds the episode of ``task`` for a batch of clean, left-aligned padded series.

    Args:
        clean: ``(B, T, C)`` clean series (padding values are ignored).
        lengths: real steps per series ``(B,)``.
        task: ``"denoise"`` (add Gaussian noise of std ``noise``), ``"impute"`` (hide
            ``num_gaps`` segments of length in ``gap``) or ``"forecast"`` (hide the last
            ``horizon`` steps).

    Returns:
        The episode dict described in the module docstring.
    """
    check_task(task)
    _, t, c = clean.shape
    mask = torch.arange(t)[None] < lengths[:, None]
    clean = clean * mask[..., None]
    inputs = clean
    if task == "denoise":
        noisy = clean + noise * torch.randn(clean.shape, generator=generator)
        inputs = noisy * mask[..., None]
        observed = mask[..., None].expand(-1, -1, c).clone()
        score = observed
    elif task == "impute":
        observed = gap_mask(lengths, t, c, num_gaps, gap[0], gap[1], generator)
        score = mask[..., None] & ~observed
    else:
        observed = forecast_mask(lengths, t, c, horizon)
        score = mask[..., None] & ~observed
    inputs = torch.where(observed, inputs, torch.zeros_like(inputs))
    return {"inputs": inputs, "observed": observed, "mask": mask, "target": clean,
            "score": score}


def random_crops(series: np.ndarray, batch: int, min_len: int, max_len: int,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random crops of lengths in ``[min_len, max_len]`` from ``(T, C)``, padded to max_len.

    Returns:
        ``(crops (B, max_len, C), lengths (B,))``.
    """
    if not 1 <= min_len <= max_len <= len(series):
        raise ValueError(f"need 1 <= min_len <= max_len <= T={len(series)}, got "
                         f"{min_len}, {max_len}")
    source = torch.as_tensor(series, dtype=torch.float32)
    lengths = torch.randint(min_len, max_len + 1, (batch,), generator=generator)
    crops = source.new_zeros(batch, max_len, source.shape[1])
    for i, length in enumerate(lengths.tolist()):
        start = int(torch.randint(0, len(series) - length + 1, (1,), generator=generator))
        crops[i, :length] = source[start:start + length]
    return crops, lengths
