"""The single-image super-resolution protocol of the literature (SRCNN, VDSR and after).

For a high-resolution test image and a scale ``s``:

1. the image is **mod-cropped**: its bottom/right rows and columns are dropped so that both
   sides are multiples of ``s`` (:func:`mod_crop`);
2. its **luma** Y is MATLAB's ``rgb2ycbcr`` of the 8-bit image, which MATLAB returns as 8-bit
   integers (BT.601, 16–235; :func:`luma`); a grey image is its own Y;
3. the **low-resolution** input is ``imresize(Y, 1/s, 'bicubic')`` in double precision
   (:func:`downscale`, MATLAB-compatible, :mod:`n3seq_image.imresize`), not rounded;
4. a method maps it to a high-resolution Y (``bicubic``: ``imresize(LR, s, 'bicubic')``); the
   result is clipped to ``[0, 1]`` and rounded to 8 bits, as a saved image is;
5. **PSNR** (peak 1, i.e. 255 on 8 bits) and **SSIM** (Wang et al.'s: 11×11 Gaussian window,
   σ = 1.5, K = (0.01, 0.03)) are computed on Y with ``s`` pixels shaved from every border
   (:func:`sr_psnr`, :func:`sr_ssim`).

With these steps the bicubic baseline on Set5 is 33.66 / 30.39 / 28.42 dB and
0.9299 / 0.8682 / 0.8104 SSIM at ×2 / ×3 / ×4, the published figures (docs/sr.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from n3seq_image.color import quantize, rgb_to_y
from n3seq_image.imresize import imresize

#: The scale factors the SR models are trained and evaluated for.
SCALES = (2, 3, 4)

#: An SR method: ``(low-resolution Y (h, w), scale) → high-resolution Y (h·s, w·s)``.
SRMethod = Callable[[np.ndarray, int], np.ndarray]


def check_scale(scale: object, name: str = "scale") -> int:
    """Returns ``scale`` if it is an integer scale factor >= 2, else raises ``ValueError``."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 2:
        raise ValueError(f"{name} must be an integer >= 2, got {scale!r}")
    return int(scale)


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crops ``(H, W[, C])`` to ``(H − H mod s, W − W mod s)``, keeping the top-left corner.

    Raises:
        ValueError: the image is smaller than ``scale`` along a side.
    """
    scale = check_scale(scale)
    h, w = image.shape[:2]
    if h < scale or w < scale:
        raise ValueError(f"image of shape {image.shape} is smaller than the scale {scale}")
    return image[: h - h % scale, : w - w % scale]


def luma(image: np.ndarray) -> np.ndarray:
    """The protocol's Y channel of a ``[0, 1]`` image, float64 on the 8-bit grid.

    RGB ``(H, W, 3)`` images give MATLAB's ``rgb2ycbcr`` Y rounded to 8 bits (what MATLAB
    returns for a ``uint8`` image); grey ``(H, W)`` images are returned as they are (the
    benchmark scripts take a one-channel image as its own Y).
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return quantize(rgb_to_y(image))
    raise ValueError(f"image must have shape (H, W) or (H, W, 3), got {image.shape}")


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """``imresize(hr, 1/s, 'bicubic')`` in float64 of an ``(H, W)`` image; sides divisible by s."""
    scale = check_scale(scale)
    hr = np.asarray(hr, dtype=np.float64)
    if hr.ndim != 2:
        raise ValueError(f"hr must have shape (H, W), got {hr.shape}")
    h, w = hr.shape
    if h % scale or w % scale:
        raise ValueError(f"hr of shape {hr.shape} is not mod-cropped to scale {scale}")
    return imresize(torch.from_numpy(hr), size=(h // scale, w // scale)).numpy()


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """``imresize(lr, s, 'bicubic')`` in float64 of an ``(h, w)`` image (not clipped)."""
    scale = check_scale(scale)
    lr = np.asarray(lr, dtype=np.float64)
    if lr.ndim != 2:
        raise ValueError(f"lr must have shape (h, w), got {lr.shape}")
    h, w = lr.shape
    return imresize(torch.from_numpy(lr), size=(h * scale, w * scale)).numpy()


def prepare(image: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """``(hr_y, lr_y)`` of a test image: mod-crop, luma, bicubic downscaling."""
    hr = luma(mod_crop(np.asarray(image), scale))
    return hr, downscale(hr, scale)


def finish(estimate: np.ndarray) -> np.ndarray:
    """A method's output as a saved 8-bit image would hold it: clipped to [0, 1], rounded."""
    estimate = np.asarray(estimate, dtype=np.float64)
    if not np.all(np.isfinite(estimate)):
        raise ValueError("the super-resolved image has non-finite values")
    return quantize(np.clip(estimate, 0.0, 1.0))


def shave(image: np.ndarray, border: int) -> np.ndarray:
    """Drops ``border`` pixels from every side of ``(H, W)``."""
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    h, w = image.shape[:2]
    if 2 * border >= min(h, w):
        raise ValueError(f"cannot shave {border} px from an image of shape {image.shape}")
    return image[border : h - border, border : w - border] if border else image


def _pair(estimate: np.ndarray, target: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(estimate, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"estimate and target must be (H, W) images of one shape, got {a.shape} and {b.shape}"
        )
    return shave(a, scale), shave(b, scale)


def sr_psnr(estimate: np.ndarray, target: np.ndarray, scale: int) -> float:
    """PSNR (dB, peak 1) of two Y images with ``scale`` border pixels shaved.

    The estimate is used as given: pass it through :func:`finish` first for the protocol.
    """
    a, b = _pair(estimate, target, scale)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


#: Side of SSIM's Gaussian window: the smallest image SSIM scores, after shaving.
SSIM_WINDOW = 11


def sr_ssim(estimate: np.ndarray, target: np.ndarray, scale: int) -> float:
    """SSIM of Wang et al. (11×11 Gaussian window, σ = 1.5) with ``scale`` pixels shaved.

    scikit-image's ``structural_similarity`` with Gaussian weights and population covariances
    crops the 5 px its window cannot cover, as the authors' ``ssim_index.m`` does with its
    ``'valid'`` filtering; the two agree.
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(estimate, target, scale)
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs at least {SSIM_WINDOW}×{SSIM_WINDOW} px after shaving, got {a.shape}"
        )
    return float(structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    ))
