"""Image quality metrics: PSNR and SSIM for images in ``[0, 1]``."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from n3seq._checks import check_real


def _as_numpy(x: np.ndarray | Tensor, name: str) -> np.ndarray:
    """``x`` as a float64 array; raises naming ``name`` for a non-real, empty or NaN/inf one."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        x = (x.double() if x.is_floating_point() else x).numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "uif":
        raise TypeError(f"{name} must be a real-valued image array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.isfinite(arr).all():
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name} contains NaN/inf (first at index {first}, value {arr[first]})")
    return arr


def _data_range(data_range: object) -> float:
    return check_real("data_range", data_range, positive=True)


def psnr(
    estimate: np.ndarray | Tensor, target: np.ndarray | Tensor, data_range: float = 1.0
) -> float:
    """Peak signal-to-noise ratio ``10·log10(range² / MSE)`` in dB over all pixels.

    Args:
        estimate: denoised image (any shape).
        target: clean reference, same shape.
        data_range: peak value (1 for ``[0, 1]`` images).

    Returns:
        PSNR in dB (``inf`` when the images are equal).

    Example:
        >>> round(psnr(np.full((4, 4), 0.1), np.zeros((4, 4))), 6)
        20.0
    """
    data_range = _data_range(data_range)
    a, b = _as_numpy(estimate, "estimate"), _as_numpy(target, "target")
    if a.shape != b.shape:
        raise ValueError(
            f"estimate and target must have the same shape, got {a.shape} and {b.shape}"
        )
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def batch_psnr(estimate: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR of ``(B, …)`` tensors, returned as a ``(B,)`` tensor (``inf`` where equal).

    Raises:
        TypeError: an argument is not a floating-point tensor.
        ValueError: the shapes differ, or ``data_range`` is not positive and finite.
    """
    for name, x in (("estimate", estimate), ("target", target)):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            what = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"{name} must be a floating-point tensor (B, ...), got {what}")
    data_range = _data_range(data_range)
    if estimate.shape != target.shape:
        raise ValueError(
            f"estimate and target must have the same shape, got {tuple(estimate.shape)} and "
            f"{tuple(target.shape)}"
        )
    mse = (estimate - target).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


#: Side of scikit-image's default SSIM window: the smallest image :func:`ssim` scores.
SSIM_WINDOW = 7


def ssim(
    estimate: np.ndarray | Tensor, target: np.ndarray | Tensor, data_range: float = 1.0
) -> float:
    """Structural similarity (scikit-image defaults: 7×7 uniform window) of grayscale images.

    Colour ``(H, W, C)`` images are averaged over channels.
    """
    from skimage.metrics import structural_similarity

    data_range = _data_range(data_range)
    a, b = _as_numpy(estimate, "estimate"), _as_numpy(target, "target")
    if a.shape != b.shape:
        raise ValueError(
            f"estimate and target must have the same shape, got {a.shape} and {b.shape}"
        )
    if a.ndim not in (2, 3):
        raise ValueError(f"ssim expects (H, W) or (H, W, C) images, got shape {a.shape}")
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(
            f"ssim needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW} px (its window), got "
            f"shape {a.shape}"
        )
    if a.ndim == 3:
        return float(structural_similarity(a, b, data_range=data_range, channel_axis=-1))
    return float(structural_similarity(a, b, data_range=data_range))
