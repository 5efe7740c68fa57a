"""1-D window candidates that stay inside each series of a padded batch."""

from __future__ import annotations

import torch
from torch import Tensor


def padded_window_candidates(lengths: Tensor, num_tokens: int, radius: int) -> Tensor:
    """Window of ``2·radius + 1`` token indices around each token, kept inside its own series.

    Like :func:`n3seq.window_candidates`, but per batch item: near the end of a shorter
    series the window is shifted inward to its last real token, so no query (not even a
    padding token) is left with only padded candidates.

    Args:
        lengths: number of real tokens per series ``(B,)`` (real tokens come first).
        num_tokens: padded number of tokens N.
        radius: half width r >= 1.

    Returns:
        LongTensor ``(B, N, 2r + 1)`` for the ``candidates`` argument of
        :func:`n3seq.knn_aggregate`.

    Raises:
        ValueError: if a series has fewer than ``2r + 1`` real tokens.

    Example:
        >>> padded_window_candidates(torch.tensor([5, 3]), 5, 1)[1]
        tensor([[0, 1, 2],
                [0, 1, 2],
                [0, 1, 2],
                [0, 1, 2],
                [0, 1, 2]])
    """
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"radius must be an int >= 1, got {radius!r}")
    if not isinstance(lengths, Tensor) or lengths.dim() != 1:
        raise ValueError(f"lengths must be a tensor of shape (B,), got "
                         f"{getattr(lengths, 'shape', type(lengths).__name__)}")
    width = 2 * radius + 1
    lengths = lengths.long()
    if bool((lengths < width).any()) or bool((lengths > num_tokens).any()):
        raise ValueError(
            f"every series needs between 2*radius+1={width} and num_tokens={num_tokens} real "
            f"tokens (radius={radius}), got lengths {lengths.tolist()}"
        )
    pos = torch.arange(num_tokens, device=lengths.device)
    start = torch.minimum((pos - radius).clamp(min=0)[None], (lengths - width)[:, None])
    return start[..., None] + torch.arange(width, device=lengths.device)
