"""Subnormal floats: why they slow CPU inference and training down, and how we avoid them.

x86 CPUs handle subnormal operands (magnitudes below 1.2e-38 in float32) in microcode.
Trained weights hold such values, and tiny-but-normal weights make subnormal activations, so a
float32 N3Net forward pass on a 256×256 image took 10.7 s instead of 0.9 s and a training step
30 s instead of 1.8 s (2 threads, a CPU without AVX512-BF16). Three remedies, each exact for
practical purposes: :func:`zero_negligible_weights` (applied by
:func:`~n3seq_image.checkpoint.load_model`), :func:`flush_denormals` for a whole program (the
``n3seq-image`` commands), :func:`denormals_flushed` for a block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

#: An entry below this fraction of its tensor's largest magnitude is set to zero (float32's
#: eps squared: such a term changes no float32 sum that also holds the largest one).
NEGLIGIBLE = 2.0**-46

_flush_depth = 0
_flush_always = False


def zero_negligible_weights(model: nn.Module) -> int:
    """Sets to zero every floating parameter or buffer entry that is negligible in its tensor.

    An entry is negligible when its magnitude is below :data:`NEGLIGIBLE` (2⁻⁴⁶ ≈ 1.4e-14)
    times the largest magnitude of its tensor. The shipped σ = 25 N3Net has 191,340 such
    weights (27 %, mostly in its N³ embedding and temperature networks; 50,939 of them
    subnormal); zeroing them leaves its output bit-identical and removes every subnormal
    activation, which made float32 inference on a CPU 7× faster.

    Args:
        model: any module; changed in place.

    Returns:
        The number of non-zero entries set to zero.
    """
    count = 0
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if not tensor.is_floating_point() or tensor.numel() == 0:
                continue
            magnitude = tensor.abs()
            small = (magnitude < magnitude.max() * NEGLIGIBLE) & (tensor != 0)
            count += int(small.sum())
            tensor.masked_fill_(small, 0.0)
    return count


def flush_denormals() -> bool:
    """Treats subnormal floats as zero on the CPU, for the rest of the process.

    Call it at the start of a program, before its first multi-threaded torch operation: the
    setting is per thread, and torch's worker threads copy it from the main thread when they
    start (a later call reaches the main thread only). See :func:`denormals_flushed` for why
    it matters.

    Returns:
        Whether the CPU supports it (x86 with SSE3; False elsewhere, where nothing changes).
    """
    global _flush_always
    _flush_always = bool(torch.set_flush_denormal(True))
    return _flush_always


@contextlib.contextmanager
def denormals_flushed() -> Iterator[None]:
    """Treats subnormal floats as zero on the CPU inside the block.

    Flushing changes results only below 1.2e-38, far under float32's resolution of any value
    an image network computes with. Blocks nest; leaving the outermost switches flushing off
    again unless :func:`flush_denormals` turned it on for the process. The setting is per
    thread: worker threads that torch starts inside the block inherit it (a fresh
    ``n3seq-image`` process runs its whole command inside one), older ones do not. Without
    SSE3 it does nothing.

    Example:
        >>> with denormals_flushed():
        ...     torch.tensor([1e-40]).mul(1.0).item()
        0.0
    """
    global _flush_depth
    if _flush_depth == 0:
        torch.set_flush_denormal(True)
    _flush_depth += 1
    try:
        yield
    finally:
        _flush_depth -= 1
        if _flush_depth == 0:
            torch.set_flush_denormal(_flush_always)
