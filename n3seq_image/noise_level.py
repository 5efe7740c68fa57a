"""Estimating the level σ of additive white Gaussian noise from a single noisy image.

Two published steps, combined:

1. **Weak-texture patches** (Liu, Tanaka & Okutomi, "Single-image noise level estimation for
   blind denoising", IEEE TIP 2013). For a patch of pure noise, the sum of its squared
   horizontal and vertical differences follows a Gamma law whose scale is σ²; patches whose
   gradient energy exceeds that law's 99 % quantile hold texture and are dropped. Starting
   from all patches, the selection and σ are refined alternately until they settle.
2. **Eigenvalues of the patch covariance** (Chen, Zhu & Heng, "An Efficient Statistical
   Method for Image Noise Level Estimation", ICCV 2015). Image content lives in a few large
   eigenvalues of the ``p²``-dimensional covariance of the selected patches, while noise adds
   σ² to all of them: sorted ascending, σ² is the mean of the longest prefix whose mean equals
   its median (as many eigenvalues above the mean as below).

On Set12 with Gaussian noise of σ = 5 … 50 every image's estimate is within ±1.5 of the true σ
(``tests/image/test_noise_level.py``). Clipping to 8 bits removes variance at high σ, so the
estimate of a clipped image is lower there, as the noise it holds is.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import gammaincinv

from n3seq._checks import check_int

__all__ = ["estimate_sigma"]

_MAX_PATCHES = 65_536


def _chen_variance(eigenvalues: torch.Tensor) -> float:
    """Mean of the longest ascending prefix whose mean is also its median."""
    for i in range(eigenvalues.numel(), 0, -1):
        head = eigenvalues[:i]
        tau = head.mean()
        if int((head > tau).sum()) == int((head < tau).sum()):
            return float(tau)
    return float(eigenvalues[0])


def _covariance_variance(cols: torch.Tensor) -> float:
    cols = cols - cols.mean(dim=1, keepdim=True)
    cov = cols @ cols.T / cols.shape[1]
    return _chen_variance(torch.linalg.eigvalsh(cov).clamp_min(0.0))


def _channel_variance(image: torch.Tensor, patch: int, iterations: int = 8) -> float:
    h, w = image.shape
    stride = max(1, math.ceil(math.sqrt((h - patch + 1) * (w - patch + 1) / _MAX_PATCHES)))
    cols = torch.nn.functional.unfold(image[None, None], patch, stride=stride)[0]  # (p², n)
    patches = cols.T.reshape(-1, patch, patch)
    energy = (patches.diff(dim=2).pow(2).sum((1, 2)) + patches.diff(dim=1).pow(2).sum((1, 2)))
    dims = patch * patch
    # For pure noise the energy is σ² times a Gamma(dims/2, 2·tr(DᵀD)/dims) variable, where
    # tr(DᵀD) = 4·p·(p − 1) counts the two ±1 entries of every difference.
    threshold = float(gammaincinv(dims / 2, 0.99)) * 2.0 * 4 * patch * (patch - 1) / dims
    variance = _covariance_variance(cols)
    for _ in range(iterations):
        selected = energy < variance * threshold
        if int(selected.sum()) < 4 * dims:
            break
        new = _covariance_variance(cols[:, selected])
        if abs(new - variance) <= 1e-12:
            break
        variance = new
    return variance


def estimate_sigma(image: np.ndarray | torch.Tensor, patch: int = 7) -> float:
    """Estimates the noise level of a grayscale or colour image, on the 0–255 scale.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` float image in ``[0, 1]`` (colour: channels are
            estimated separately and averaged).
        patch: patch side (7, as in both papers, suits images from 64 px up).

    Returns:
        σ on the 0–255 scale (``0.0`` for a noise-free constant image).

    Raises:
        TypeError: ``image`` is not a real-valued array/tensor or ``patch`` not an int.
        ValueError: ``patch < 2``, the image is not 2-D/3-D, is smaller than ``2 · patch`` on
            a side, or holds NaN/inf.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> clean = np.tile(np.linspace(0, 1, 128, dtype=np.float32), (128, 1))
        >>> noisy = clean + rng.normal(0, 20 / 255, clean.shape).astype(np.float32)
        >>> abs(estimate_sigma(noisy) - 20) < 1
        True
    """
    patch = check_int("patch", patch, min=2)
    if isinstance(image, torch.Tensor):
        if image.is_meta:
            raise ValueError("image is a meta tensor (no values to estimate the noise from)")
        image = image.detach().cpu()
        image = image.double() if image.is_floating_point() else image
    arr_np = np.asarray(image)
    if arr_np.dtype.kind not in "uif":
        raise TypeError(f"image must be a real-valued image array on the [0, 1] scale, got "
                        f"dtype {arr_np.dtype}")
    arr = torch.as_tensor(arr_np, dtype=torch.float64)
    if arr.dim() not in (2, 3):
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got {tuple(arr.shape)}")
    if min(arr.shape[:2]) < 2 * patch:
        raise ValueError(
            f"image of shape {tuple(arr.shape)} is too small to estimate its noise level "
            f"(needs at least {2 * patch} px per side)"
        )
    if not torch.isfinite(arr).all():
        raise ValueError("image contains NaN or inf values")
    channels = arr[..., None] if arr.dim() == 2 else arr
    sigmas = [
        math.sqrt(_channel_variance(channels[..., c], patch)) * 255.0
        for c in range(channels.shape[-1])
    ]
    return float(np.mean(sigmas))
