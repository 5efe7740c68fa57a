"""Input validation shared by the functional API.

Every check raises with a message that names the argument and the offending values. Checks
that need to read tensor data (NaN, positivity, counts) are skipped while ``torch.compile``
traces, so that they do not break the graph; eager calls always run them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def tracing() -> bool:
    """True while torch.compile/export traces: data-dependent checks are skipped then."""
    return torch.compiler.is_compiling()


def check_floating(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_rank(x: Tensor, name: str, layout: str) -> None:
    """Checks that ``x`` has as many dimensions as ``layout`` (e.g. ``"B, N, E"``) names."""
    ndim = len(layout.split(","))
    if x.dim() != ndim:
        raise ValueError(f"{name} must have shape ({layout}), got {tuple(x.shape)}")


def check_finite(x: Tensor, name: str) -> None:
    if tracing():
        return
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN/Inf value(s) (first at index {first}, "
            f"value {x[first].item()})"
        )


def check_k(k: int, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"{name} must be an int, got {type(k).__name__} {k!r}")
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")


def check_mask(mask: Tensor, name: str, shape: tuple[int, ...], layout: str) -> None:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        dtype = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{name} must be a bool tensor (True = valid), got {dtype}")
    try:
        ok = torch.broadcast_shapes(mask.shape, shape) == torch.Size(shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} must be broadcastable to ({layout}) = {tuple(shape)}, got {tuple(mask.shape)}"
        )


def check_enough_candidates(num_valid: Tensor, k: int, what: str) -> None:
    """Raises when some row has fewer than ``k`` valid candidates.

    Args:
        num_valid: integer tensor, valid candidates per row.
        k: number of neighbours asked for.
        what: description of the rows, used in the message.
    """
    if tracing() or num_valid.numel() == 0:
        return
    low = int(num_valid.min())
    if low < k:
        where = tuple(int(i) for i in (num_valid == low).nonzero()[0])
        if low == 0:
            raise ValueError(f"{what}: row {where} has no valid candidate (fully masked)")
        raise ValueError(
            f"k={k} is larger than the number of valid candidates: {what} row {where} has "
            f"only {low}"
        )


def as_temperature(temperature: float | Tensor, target: torch.Size, name: str = "temperature",
                   dtype: torch.dtype | None = None, device: torch.device | None = None) -> Tensor:
    """Validates a temperature and returns it as a tensor broadcastable to ``target``."""
    if isinstance(temperature, Tensor):
        if not temperature.is_floating_point():
            raise TypeError(
                f"{name} must be a float or floating-point tensor, got {temperature.dtype}"
            )
        try:
            ok = torch.broadcast_shapes(temperature.shape, target) == target
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"{name} must be broadcastable to {tuple(target)}, "
                f"got shape {tuple(temperature.shape)}"
            )
        t = temperature.to(dtype=dtype, device=device)
    elif isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        t = torch.tensor(float(temperature), dtype=dtype, device=device)
    else:
        raise TypeError(f"{name} must be a float or a tensor, got {type(temperature).__name__}")
    if not tracing():
        bad = torch.isnan(t) | (t <= 0) | torch.isinf(t)
        if bool(bad.any()):
            value = t[bad].flatten()[0].item()
            raise ValueError(f"{name} must be positive and finite, got {value}")
    return t


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype the relaxation runs in: float64 if any input is, else float32."""
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32
