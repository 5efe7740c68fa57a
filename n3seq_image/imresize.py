"""MATLAB-compatible bicubic ``imresize`` in torch: the degradation the SR literature uses.

Super-resolution benchmarks (SRCNN, VDSR and nearly every paper since) make their
low-resolution images with MATLAB's ``imresize(·, 1/s, 'bicubic')`` and report the bicubic
baseline with ``imresize(·, s, 'bicubic')``. Published numbers are only comparable when that
exact function is used, and common library resizers are not it: PIL and OpenCV use the cubic
kernel with ``a = −0.75`` / ``a = −0.5`` without MATLAB's antialiasing or boundary rule, and
``torch.nn.functional.interpolate`` (``a = −0.75``) neither. This module reproduces MATLAB:

- the Keys cubic kernel with ``a = −0.5``, support 4;
- when downscaling (``scale < 1``) the kernel is stretched by ``1/scale`` and scaled by
  ``scale`` (antialiasing), so its support is ``4/scale`` input pixels;
- output pixel ``x`` (1-based) samples the input at ``u = x/scale + ½·(1 − 1/scale)``;
- weights are normalised to sum to 1 for each output pixel;
- input indices outside the image are mirrored with the edge pixel repeated
  (``[1 … n, n … 1]``, MATLAB's ``symmetric``), periodically for very small images;
- the two dimensions are resized one after the other, the one with the smaller scale first
  (rows first on a tie), as MATLAB does.

The computation runs in the input's floating dtype (``float64`` for the exact protocol);
the weights are always computed in ``float64``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from n3seq._checks import check_bool, check_int, check_real

#: Support of the (unstretched) cubic kernel, in pixels.
KERNEL_WIDTH = 4.0


def cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's cubic convolution kernel (Keys, ``a = −0.5``), elementwise.

    ``1.5|x|³ − 2.5|x|² + 1`` for ``|x| ≤ 1``, ``−0.5|x|³ + 2.5|x|² − 4|x| + 2`` for
    ``1 < |x| ≤ 2``, else 0.

    Example:
        >>> cubic(np.array([0.0, 0.5, 1.0, 1.5, 2.0])).tolist()
        [1.0, 0.5625, 0.0, -0.0625, 0.0]
    """
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


def contributions(
    in_length: int, out_length: int, scale: float, antialias: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and (0-based) input indices of every output pixel along one dimension.

    This is MATLAB's ``contributions`` for the bicubic kernel: row ``i`` says that output
    pixel ``i`` is ``Σ_j weights[i, j] · input[indices[i, j]]``. Columns whose weights are
    zero for every output pixel are dropped, as MATLAB does.

    Args:
        in_length: input size along the dimension (>= 1).
        out_length: output size (>= 1).
        scale: ``output / input`` scale factor used for the sampling grid and the kernel.
        antialias: stretch the kernel when downscaling (MATLAB's default).

    Returns:
        ``(weights, indices)``, float64 and int64 arrays of shape ``(out_length, P)``.

    Example:
        >>> w, i = contributions(8, 4, 0.5)
        >>> w.shape, bool(np.allclose(w.sum(1), 1))
        ((4, 8), True)
    """
    for name, value in (("in_length", in_length), ("out_length", out_length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not (isinstance(scale, (int, float, np.floating)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    scale = float(scale)
    width = KERNEL_WIDTH
    if scale < 1 and antialias:
        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * cubic(scale * x)

        width = KERNEL_WIDTH / scale
    else:
        kernel = cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def _pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
        pair = (float(value), float(value))
    elif isinstance(value, Sequence) and len(value) == 2:
        pair = (float(value[0]), float(value[1]))
    else:
        raise ValueError(f"{name} must be a number or a (height, width) pair, got {value!r}")
    if not all(math.isfinite(v) and v > 0 for v in pair):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return pair


def output_size(in_size: int, scale: float) -> int:
    """MATLAB's output length ``ceil(scale · in_size)``.

    A product within ``1e-9`` (relative) of an integer counts as that integer, so that
    ``output_size(255, 1/3)`` is 85 whatever the rounding of ``1/3``; MATLAB's own ``ceil``
    can be one larger in such floating-point corner cases. Pass ``size`` to
    :func:`imresize` to fix the output exactly.
    """
    in_size = check_int("in_size", in_size, min=1)
    scale = check_real("scale", scale, positive=True)
    value = scale * in_size
    nearest = round(value)
    if abs(value - nearest) <= 1e-9 * max(1.0, abs(value)):
        return max(1, int(nearest))
    return max(1, math.ceil(value))


def _resize_dim(x: Tensor, dim: int, out_length: int, scale: float, antialias: bool) -> Tensor:
    weights, indices = contributions(x.shape[dim], out_length, scale, antialias)
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    idx = torch.as_tensor(indices, dtype=torch.long, device=x.device)
    moved = x.movedim(dim, -1)
    out = None
    # One tap at a time keeps the memory at two outputs whatever the kernel support.
    for j in range(w.shape[1]):
        term = moved.index_select(-1, idx[:, j]) * w[:, j]
        out = term if out is None else out.add_(term)
    assert out is not None
    return out.movedim(-1, dim)


def imresize(
    image: Tensor,
    scale: float | Sequence[float] | None = None,
    *,
    size: Sequence[int] | None = None,
    antialias: bool = True,
) -> Tensor:
    """Resizes the last two dimensions ``(H, W)`` like MATLAB's ``imresize(…, 'bicubic')``.

    Give either ``scale`` (one factor or a ``(height, width)`` pair; the output size is
    :func:`output_size`) or ``size`` (the output ``(height, width)``; the scale is then
    ``size / input`` per dimension, as in MATLAB).

    Args:
        image: floating-point tensor ``(..., H, W)`` (any leading batch/channel dims).
        scale: scale factor(s) > 0.
        size: output ``(height, width)``.
        antialias: antialias when downscaling (MATLAB's default ``true``).

    Returns:
        The resized tensor ``(..., H', W')`` in the dtype and on the device of ``image``.
        Values are not clipped (bicubic overshoots near edges, as in MATLAB for doubles).

    Raises:
        TypeError: ``image`` is not a floating-point tensor.
        ValueError: bad ``scale``/``size``, or both or neither given.

    Example:
        >>> x = torch.rand(2, 1, 12, 9, dtype=torch.float64)
        >>> imresize(x, 1 / 3).shape
        torch.Size([2, 1, 4, 3])
        >>> imresize(x, size=(24, 10)).shape
        torch.Size([2, 1, 24, 10])
    """
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(
            f"image must be a floating-point tensor (convert uint8 with .double() / 255), "
            f"got dtype {image.dtype}"
        )
    if image.dim() < 2:
        raise ValueError(f"image must have shape (..., H, W), got {tuple(image.shape)}")
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    antialias = check_bool("antialias", antialias)
    h, w = image.shape[-2:]
    if size is not None:
        if (
            isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
                       for s in size)
        ):
            raise ValueError(f"size must be a (height, width) pair of ints >= 1, got {size!r}")
        out = (int(size[0]), int(size[1]))
        scales = (out[0] / h, out[1] / w)
    else:
        scales = _pair(scale, "scale")
        out = (output_size(h, scales[0]), output_size(w, scales[1]))
    if h < 1 or w < 1:
        raise ValueError(f"image must not be empty, got shape {tuple(image.shape)}")
    x = image
    # MATLAB resizes the dimension with the smaller scale first (rows on a tie).
    for axis in sorted((0, 1), key=lambda a: scales[a]):
        if scales[axis] == 1.0 and out[axis] == x.shape[-2 + axis]:
            continue
        x = _resize_dim(x, x.dim() - 2 + axis, out[axis], scales[axis], antialias)
    return x if x is not image else image.clone()
