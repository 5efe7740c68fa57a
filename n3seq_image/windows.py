"""2-D search windows on a patch grid: the candidate neighbours of every patch."""

from __future__ import annotations

import torch
from torch import Tensor

from n3seq._checks import check_bool, check_int


def window_starts(length: int, window: int, device: torch.device | str | None = None) -> Tensor:
    """First index of the window of each position along one axis, shifted inward at borders.

    ``start(i) = clamp(i − window // 2, 0, length − window)``.

    Example:
        >>> window_starts(6, 3)
        tensor([0, 0, 1, 2, 3, 3])
    """
    window = check_int("window", window, min=1)
    length = check_int("length", length, min=0)
    if length < window:
        raise ValueError(f"an axis of {length} positions is smaller than the window {window}")
    return (torch.arange(length, device=device) - window // 2).clamp(0, length - window)


def window_candidates_2d(
    grid: tuple[int, int],
    window: int = 15,
    exclude_self: bool = True,
    device: torch.device | str | None = None,
) -> Tensor:
    """Candidate indices of each position of an ``n₁ × n₂`` grid: a ``window × window`` square.

    The square of position ``(i, j)`` starts at row ``clamp(i − window // 2, 0, n₁ − window)``
    and column ``clamp(j − window // 2, 0, n₂ − window)``, so near the borders it is shifted
    inward and every position keeps the same number of candidates. Positions are flattened
    row-major (index ``i·n₂ + j``, the token order of
    :func:`~n3seq_image.patches.extract_patches`); candidates are listed row-major inside the
    square, with the position itself removed when ``exclude_self``.

    Args:
        grid: ``(n₁, n₂)``, both >= ``window``.
        window: side of the square (15 in N3Net: 80 × 80 pixels with 10 × 10 patches at
            stride 5).
        exclude_self: drop the query itself (``window² − 1`` candidates, 224 for 15).
        device: device of the result.

    Returns:
        LongTensor of shape ``(1, n₁·n₂, O)`` with ``O = window² − exclude_self``, usable as
        ``candidates`` of :func:`n3seq.knn_aggregate`.

    Example:
        >>> window_candidates_2d((20, 30), window=15).shape
        torch.Size([1, 600, 224])
    """
    if not isinstance(grid, (tuple, list)) or len(grid) != 2:
        raise TypeError(f"grid must be a pair (n1, n2) of ints, got {grid!r}")
    n1, n2 = check_int("grid[0]", grid[0], min=1), check_int("grid[1]", grid[1], min=1)
    window = check_int("window", window, min=1)
    exclude_self = check_bool("exclude_self", exclude_self)
    if n1 < window or n2 < window:
        raise ValueError(f"grid {tuple(grid)} is smaller than the window {window}×{window}")
    r0 = window_starts(n1, window, device)
    c0 = window_starts(n2, window, device)
    offs = torch.arange(window, device=device)
    rows = (r0[:, None] + offs)[:, None, :, None]  # (n1, 1, w, 1)
    cols = (c0[:, None] + offs)[None, :, None, :]  # (1, n2, 1, w)
    idx = (rows * n2 + cols).reshape(n1 * n2, window * window)
    if exclude_self:
        own = torch.arange(n1 * n2, device=device)[:, None]
        keep = idx != own
        idx = idx[keep].reshape(n1 * n2, window * window - 1)
    return idx[None]
