"""MATLAB's ``rgb2ycbcr`` / ``ycbcr2rgb`` (ITU-R BT.601, studio range) for ``[0, 1]`` images.

Super-resolution results are reported as PSNR/SSIM on the luma channel Y of MATLAB's
``rgb2ycbcr``, which maps ``[0, 1]`` RGB to Y in ``[16/255, 235/255]`` and Cb, Cr in
``[16/255, 240/255]``:

.. code-block:: text

    Y  = ( 65.481 R + 128.553 G +  24.966 B) / 255 +  16/255
    Cb = (−37.797 R −  74.203 G + 112.000 B) / 255 + 128/255
    Cr = (112.000 R −  93.786 G −  18.214 B) / 255 + 128/255

(the same as MATLAB for ``double`` input; for ``uint8`` input MATLAB also rounds the result to
integers, see :func:`quantize`). The functions accept NumPy arrays and torch tensors with the
three colour channels on ``axis`` (default: last, as images are loaded here) and compute in
the input's floating dtype.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from n3seq._checks import check_int

Array = TypeVar("Array", np.ndarray, Tensor)

#: MATLAB's ``rgb2ycbcr`` matrix (rows Y, Cb, Cr) on the 0–255 scale.
RGB_TO_YCBCR = np.array([
    [65.481, 128.553, 24.966],
    [-37.797, -74.203, 112.0],
    [112.0, -93.786, -18.214],
])
#: Offsets of Y, Cb, Cr on the 0–255 scale.
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def _check(x: Array, axis: int, name: str) -> None:
    if not isinstance(x, (np.ndarray, Tensor)):
        raise TypeError(f"{name} must be a NumPy array or torch tensor, got {type(x).__name__}")
    floating = x.is_floating_point() if isinstance(x, Tensor) else np.issubdtype(
        x.dtype, np.floating)
    if not floating:
        raise TypeError(f"{name} must be floating point in [0, 1], got dtype {x.dtype}")
    axis = check_int("axis", axis)
    if x.ndim == 0 or not -x.ndim <= axis < x.ndim or x.shape[axis] != 3:
        raise ValueError(
            f"{name} must have 3 channels on axis {axis}, got shape {tuple(x.shape)}"
        )


def _mix(x: Array, matrix: np.ndarray, offset: np.ndarray, axis: int) -> Array:
    """``matrix @ channels + offset`` along ``axis`` (matrix and offset on the 0–1 scale)."""
    if isinstance(x, Tensor):
        m = torch.as_tensor(matrix, dtype=x.dtype, device=x.device)
        o = torch.as_tensor(offset, dtype=x.dtype, device=x.device)
        moved = x.movedim(axis, -1)
        return (moved @ m.T + o).movedim(-1, axis)
    moved = np.moveaxis(x, axis, -1)
    out = moved @ matrix.T.astype(x.dtype) + offset.astype(x.dtype)
    return np.moveaxis(out, -1, axis)


def rgb_to_ycbcr(rgb: Array, axis: int = -1) -> Array:
    """MATLAB ``rgb2ycbcr`` of a ``[0, 1]`` RGB image; YCbCr on the ``[0, 1]`` scale.

    Example:
        >>> ycc = rgb_to_ycbcr(np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
        >>> np.round(ycc * 255, 6).tolist()
        [[16.0, 128.0, 128.0], [235.0, 128.0, 128.0]]
    """
    _check(rgb, axis, "rgb")
    return _mix(rgb, RGB_TO_YCBCR / 255.0, YCBCR_OFFSET / 255.0, axis)


def ycbcr_to_rgb(ycbcr: Array, axis: int = -1) -> Array:
    """MATLAB ``ycbcr2rgb``: the exact inverse of :func:`rgb_to_ycbcr` (values not clipped)."""
    _check(ycbcr, axis, "ycbcr")
    inverse = np.linalg.inv(RGB_TO_YCBCR / 255.0)
    return _mix(ycbcr, inverse, -inverse @ (YCBCR_OFFSET / 255.0), axis)


def rgb_to_y(rgb: Array, axis: int = -1) -> Array:
    """The Y channel of :func:`rgb_to_ycbcr` (the channel axis removed)."""
    _check(rgb, axis, "rgb")
    w = RGB_TO_YCBCR[0] / 255.0
    if isinstance(rgb, Tensor):
        r, g, b = rgb.unbind(axis)
    else:
        r, g, b = np.moveaxis(rgb, axis, 0)
    return r * w[0] + g * w[1] + b * w[2] + YCBCR_OFFSET[0] / 255.0


def quantize(x: Array) -> Array:
    """Rounds a ``[0, 1]`` image to the nearest of the 256 8-bit levels (not clipped).

    Halves round away from zero, as MATLAB's ``round`` in a ``uint8`` conversion
    (``rgb2ycbcr`` of a ``uint8`` image returns the rounded double result); NumPy and torch
    would round them to even.
    """
    v = x * 255.0
    if isinstance(x, Tensor):
        return torch.sign(v) * torch.floor(v.abs() + 0.5) / 255.0
    return np.sign(v) * np.floor(np.abs(v) + 0.5) / 255.0
