"""Which arithmetic the image networks' convolutions run in (float32 or bfloat16 autocast)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from n3seq_image.denormals import denormals_flushed

PRECISIONS = ("auto", "float32", "bfloat16")


def bf16_supported(device: torch.device | str) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively (AVX512-BF16/AMX CPUs, CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported())
    return False


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype ``precision`` means on ``device`` (``None``: plain float32).

    Args:
        precision: ``"auto"`` (bfloat16 where :func:`bf16_supported`, else float32),
            ``"float32"`` or ``"bfloat16"`` (forced, emulated where not native).
        device: where the network runs.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.

    Example:
        >>> autocast_dtype("float32", "cpu") is None
        True
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "float32" or (precision == "auto" and not bf16_supported(device)):
        return None
    return torch.bfloat16


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """Runs the block under bfloat16 autocast when ``precision`` asks for it on ``device``.

    The N³ matching and aggregation turn autocast off inside (they stay float32); the
    convolutions around them run in bfloat16. Outputs may be bfloat16: cast with ``.float()``.
    Subnormal floats are flushed to zero inside (:func:`denormals_flushed`) at every precision.
    """
    dtype = autocast_dtype(precision, device)
    with denormals_flushed(), torch.autocast(
        torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None
    ):
        yield
