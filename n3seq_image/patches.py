"""Image ↔ patch tokens: ``(B, C, H, W)`` ↔ ``(B, N, C·p·p)`` for patch size p and stride s.

Patches are taken on a regular grid with step ``s``. When ``(L − p)`` is not a multiple of
``s`` along an axis of length ``L``, the image is first padded with zeros by
``(−(L − p)) mod s`` pixels in total along that axis, the smaller half at the top/left (the N3Net
authors' convention: 256 px → 2 + 2, 512 px → 1 + 2 for p = 10, s = 5). Every pixel is then
covered by at least one patch, the last row/column of patches ends exactly on the padded border,
and :func:`fold_patches` crops the padding again, so ``fold_patches(extract_patches(x)) == x``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from n3seq._checks import check_int, finite_abs_max


def check_finite_images(*named: tuple[str, Tensor | None]) -> float:
    """Raises if an image tensor ``(B, C, H, W)`` holds NaN or ±inf; returns the largest |value|.

    One host synchronisation for all tensors (:func:`n3seq._checks.finite_abs_max`); the
    message names the argument, the count, the first bad pixel ``(b, c, y, x)`` and its value.
    Returns 0 while data checks are off (torch.compile tracing, ``torch.func`` transforms).

    Args:
        named: ``(argument name, tensor or None)`` pairs; ``None`` entries are skipped.
    """
    values = [(x, name, None, "pixels (b, c, y, x)") for name, x in named
              if x is not None and not x.is_meta]  # meta tensors have no values to check
    maxima = finite_abs_max(values) if values else None
    return max(maxima, default=0.0) if maxima else 0.0


def _check_size_args(patch_size: int, stride: int) -> None:
    for name, value in (("patch_size", patch_size), ("stride", stride)):
        check_int(name, value, min=1)
    if stride > patch_size:
        raise ValueError(
            f"stride={stride} > patch_size={patch_size} would leave pixels uncovered"
        )


def _check_pair(size: object, name: str) -> None:
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise TypeError(f"{name} must be a pair (H, W) of ints, got {size!r}")
    for i, value in enumerate(size):
        check_int(f"{name}[{i}]", value, min=1)


def patch_padding(length: int, patch_size: int, stride: int) -> tuple[int, int]:
    """Zero padding ``(before, after)`` of an axis so patches tile it exactly.

    The total is ``(−(length − patch_size)) mod stride``; ``before`` is the smaller half.

    Example:
        >>> patch_padding(256, 10, 5), patch_padding(512, 10, 5)
        ((2, 2), (1, 2))
    """
    _check_size_args(patch_size, stride)
    length = check_int("length", length, min=0)
    if length < patch_size:
        raise ValueError(f"an axis of length {length} is shorter than patch_size={patch_size}")
    total = (-(length - patch_size)) % stride
    return total // 2, total - total // 2


def patch_grid(size: tuple[int, int], patch_size: int, stride: int) -> tuple[int, int]:
    """Number of patch positions ``(n₁, n₂)`` for an image of ``size = (H, W)``.

    Example:
        >>> patch_grid((256, 256), 10, 5)
        (51, 51)
    """
    _check_pair(size, "size")
    counts = []
    for length in size:
        before, after = patch_padding(length, patch_size, stride)
        counts.append((length + before + after - patch_size) // stride + 1)
    return counts[0], counts[1]


def pad_for_patches(x: Tensor, patch_size: int, stride: int) -> Tensor:
    """Zero-pads ``(B, C, H, W)`` as described in the module docstring."""
    top, bottom = patch_padding(x.shape[-2], patch_size, stride)
    left, right = patch_padding(x.shape[-1], patch_size, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom))


def _check_image(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}")


def extract_patches(x: Tensor, patch_size: int, stride: int) -> Tensor:
    """All ``p × p`` patches of an image on a grid of step ``s``, as tokens.

    Args:
        x: images.
        patch_size: patch side p.
        stride: grid step s, ``1 <= s <= p``.

    Returns:
        Tokens in row-major patch order; each token is the patch flattened as ``(c, u, v)``.

    Shape:
        - x: :math:`(B, C, H, W)`, with ``H, W >= p``
        - output: :math:`(B, n_1 n_2, C p^2)` with ``(n₁, n₂) = patch_grid((H, W), p, s)``

    Example:
        >>> extract_patches(torch.rand(2, 3, 20, 23), 10, 5).shape
        torch.Size([2, 12, 300])
    """
    _check_image(x)
    _check_size_args(patch_size, stride)
    if min(x.shape[-2:]) < patch_size:
        raise ValueError(
            f"x of shape {tuple(x.shape)} is smaller than patch_size={patch_size}"
        )
    cols = F.unfold(pad_for_patches(x, patch_size, stride), patch_size, stride=stride)
    return rearrange(cols, "b d n -> b n d")


def fold_patches(
    tokens: Tensor, size: tuple[int, int], patch_size: int, stride: int
) -> Tensor:
    """Inverse of :func:`extract_patches`: overlapping patches averaged back into images.

    Each pixel is the mean of the patch values that cover it (the sum of overlaps divided by
    the per-pixel count); the zero padding added by :func:`extract_patches` is cropped.

    Args:
        tokens: patch tokens as returned by :func:`extract_patches`.
        size: output ``(H, W)`` (before padding).
        patch_size: patch side p.
        stride: grid step s.

    Returns:
        Images of shape ``(B, C, H, W)`` with ``C = D / p²``.

    Shape:
        - tokens: :math:`(B, N, C p^2)` with ``N = n₁ n₂``
        - output: :math:`(B, C, H, W)`

    Example:
        >>> x = torch.rand(1, 2, 31, 40)
        >>> torch.allclose(fold_patches(extract_patches(x, 10, 5), (31, 40), 10, 5), x)
        True
    """
    _check_size_args(patch_size, stride)
    if not isinstance(tokens, Tensor) or tokens.dim() != 3:
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must have shape (B, N, C·p·p), got {shape}")
    if not tokens.is_floating_point():
        raise TypeError(f"tokens must be a floating-point tensor, got dtype {tokens.dtype}")
    _check_pair(size, "size")
    h, w = size
    n1, n2 = patch_grid((h, w), patch_size, stride)
    _, n, d = tokens.shape
    if n != n1 * n2 or d % (patch_size * patch_size):
        raise ValueError(
            f"tokens of shape {tuple(tokens.shape)} do not match size={tuple(size)}, "
            f"patch_size={patch_size}, stride={stride}: expected (B, {n1 * n2}, C·{patch_size}²)"
        )
    top, bottom = patch_padding(h, patch_size, stride)
    left, right = patch_padding(w, patch_size, stride)
    padded = (h + top + bottom, w + left + right)
    summed = F.fold(rearrange(tokens, "b n d -> b d n"), padded, patch_size, stride=stride)
    ones = torch.ones(1, patch_size * patch_size, n, dtype=tokens.dtype, device=tokens.device)
    count = F.fold(ones, padded, patch_size, stride=stride)
    return (summed / count)[..., top : top + h, left : left + w]


class ExtractPatches(nn.Module):
    """Module form of :func:`extract_patches`.

    Example:
        >>> ExtractPatches(10, 5)(torch.rand(1, 1, 80, 80)).shape
        torch.Size([1, 225, 100])
    """

    def __init__(self, patch_size: int, stride: int) -> None:
        super().__init__()
        _check_size_args(patch_size, stride)
        self.patch_size, self.stride = patch_size, stride

    def forward(self, x: Tensor) -> Tensor:
        return extract_patches(x, self.patch_size, self.stride)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, stride={self.stride}"


class FoldPatches(nn.Module):
    """Module form of :func:`fold_patches` (the output size is given to ``forward``).

    Example:
        >>> FoldPatches(10, 5)(torch.rand(1, 225, 100), (80, 80)).shape
        torch.Size([1, 1, 80, 80])
    """

    def __init__(self, patch_size: int, stride: int) -> None:
        super().__init__()
        _check_size_args(patch_size, stride)
        self.patch_size, self.stride = patch_size, stride

    def forward(self, tokens: Tensor, size: tuple[int, int]) -> Tensor:
        return fold_patches(tokens, size, self.patch_size, self.stride)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, stride={self.stride}"
