"""Which memory format the image networks run in."""

from __future__ import annotations

import torch


def preferred_memory_format(device: torch.device | str) -> torch.memory_format:
    """``torch.channels_last`` on CPU, ``torch.contiguous_format`` elsewhere.

    On CPU, oneDNN runs the 3×3 convolutions of N3Net and DnCNN faster on channels-last
    tensors (measured in ``benchmarks/``: ~25 % less time for a 481×321 N3Net inference and a
    batch-32 training step on 2 threads). :class:`~n3seq_image.N3Block2d` keeps a
    channels-last input channels-last, so one conversion of the model and of its input
    suffices: ``model.to(memory_format=fmt)``, ``x.contiguous(memory_format=fmt)``.

    Example:
        >>> preferred_memory_format("cpu")
        torch.channels_last
    """
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be a torch device or a name like 'cpu' or 'cuda:0', "
                         f"got {device!r}") from err
    if kind == "cpu":
        return torch.channels_last
    return torch.contiguous_format


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out channels-last and not also plainly contiguous.

    A tensor with one channel (or 1×1 images) is both; it says nothing about the format a
    network runs in, so it counts as not channels-last.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous()
