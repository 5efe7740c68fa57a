"""Input validation shared by the functional API and the adapters.

Every check raises with a message that names the user's argument and the offending values:
``TypeError`` for a wrong type, ``ValueError`` for a bad value, ``OverflowError`` where finite
inputs would overflow inside. Reusable pieces:

- :func:`check_int`, :func:`check_optional_int`, :func:`check_bool`, :func:`check_real`,
  :func:`check_choice`: Python arguments (ints reject ``bool`` and floats and accept NumPy
  integers).
- :func:`check_floating`, :func:`check_rank`, :func:`check_mask`: tensor types and shapes.
- :func:`check_finite` (optionally only where a mask is True) and :func:`finite_abs_max`
  (the same check, also returning the largest magnitude, for overflow guards).
- :func:`as_temperature`, :func:`temperature_floor`: temperatures.

Data-dependent checks (NaN, positivity, counts) read tensor values. While ``torch.compile``
traces they are skipped (:func:`tracing`; NaN checks become ``torch._assert_async`` there);
under ``torch.jit.trace`` they cannot be recorded in the graph, so a traced function does
**not** validate its inputs (:func:`jit_tracing` warns once); inside ``torch.func`` transforms
(:func:`transforms_active`) they are skipped as well. Eager calls always run them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

#: Message shown (once) when ``torch.jit.trace`` records an n3seq function.
JIT_TRACE_WARNING = (
    "n3seq: torch.jit.trace cannot record n3seq's input checks (NaN/inf, masks, counts); the "
    "traced graph does not validate its inputs. Prefer torch.compile or torch.export."
)
_warned_jit_trace = False


def tracing() -> bool:
    """True while torch.compile/export traces: data-dependent checks are skipped then."""
    return torch.compiler.is_compiling()


def jit_tracing() -> bool:
    """True while ``torch.jit.trace`` records; warns once that checks are not recorded."""
    global _warned_jit_trace
    if not torch.jit.is_tracing():
        return False
    if not _warned_jit_trace:
        _warned_jit_trace = True
        warnings.warn(JIT_TRACE_WARNING, stacklevel=3)
    return True


def transforms_active() -> bool:
    """True inside a ``torch.func`` transform (vmap, grad, jacrev, ...)."""
    return bool(torch._C._are_functorch_transforms_active())


#: Nesting depth of calls on ``meta`` tensors (see :func:`meta_aware`); 0 in ordinary calls.
_meta_calls = 0


def meta_active() -> bool:
    """True inside a public function called with ``meta`` tensors (shapes only, no values)."""
    return _meta_calls > 0


_F = TypeVar("_F", bound=Callable[..., Any])


def meta_aware(fn: _F) -> _F:
    """Runs ``fn`` in shape-only mode when one of its tensor arguments is on the ``meta`` device.

    Meta tensors have no values: the checks that read values (:func:`data_checks`) are skipped
    and the straightforward path (:func:`plain_path`) is taken, so the call returns a ``meta``
    result of the right shape (shape inference, ``torch.device("meta")`` model sizing).
    Mixing meta and real tensors is refused by :func:`check_same_device`.
    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _meta_calls
        if tracing() or not any(isinstance(a, Tensor) and a.is_meta
                                for a in (*args, *kwargs.values())):
            return fn(*args, **kwargs)
        _meta_calls += 1
        try:
            return fn(*args, **kwargs)
        finally:
            _meta_calls -= 1
    return wrapper  # type: ignore[return-value]


def plain_path() -> bool:
    """Whether to run the straightforward relaxation: inside ``torch.func`` transforms, under
    ``torch.jit.trace`` (the fused path branches on tensor values, which a trace would
    freeze) and on ``meta`` tensors."""
    return transforms_active() or torch.jit.is_tracing() or (not tracing() and meta_active())


def data_checks() -> bool:
    """Whether checks that read tensor values run now (eager calls: always; not on meta)."""
    return not (tracing() or jit_tracing() or transforms_active() or meta_active())


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """``torch.autocast(device.type, enabled=False)``; a no-op on ``meta`` (autocast refuses it)."""
    if device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device.type, enabled=False)


def check_same_device(*named: tuple[str, Any]) -> None:
    """Raises ``ValueError`` unless every tensor among ``(name, value)`` pairs is on one device.

    Non-tensors (``None``, floats) are skipped. The message names the first two arguments
    that differ and their devices.
    """
    first: tuple[str, torch.device] | None = None
    for name, x in named:
        if not isinstance(x, Tensor):
            continue
        if first is None:
            first = (name, x.device)
        elif x.device != first[1]:
            raise ValueError(
                f"{name} is on device {x.device} but {first[0]} is on {first[1]}; all tensor "
                f"arguments must be on the same device"
            )


def check_module_input(module: Any, x: Tensor, name: str = "x", who: str | None = None) -> None:
    """Raises unless ``x`` has the dtype and device of ``module``'s parameters.

    Under autocast on ``x``'s device a dtype difference is allowed (autocast casts). Modules
    without parameters accept anything.

    Raises:
        TypeError: the dtypes differ (e.g. a float64 image into a float32 network).
        ValueError: the devices differ.
    """
    param = next(iter(module.parameters()), None)
    if param is None:
        return
    who = who or type(module).__name__
    if x.device != param.device:
        raise ValueError(
            f"{name} is on device {x.device} but {who}'s parameters are on {param.device}; "
            f"move one of them (e.g. {name}.to({str(param.device)!r}))"
        )
    if x.dtype != param.dtype and not (
            x.device.type != "meta" and torch.is_autocast_enabled(x.device.type)):
        dtype = str(param.dtype).removeprefix("torch.")
        raise TypeError(
            f"{name} has dtype {x.dtype} but {who}'s parameters are {param.dtype}; convert "
            f"one of them ({name}.to(torch.{dtype}) or module.to({name}.dtype)), or run under "
            f"torch.autocast"
        )


# ---------------------------------------------------------------------------------------------
# Python arguments


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def check_int(name: str, value: Any, *, min: int | None = None, max: int | None = None) -> int:
    """Validates an integer argument and returns it as a Python int.

    Accepts Python and NumPy integers; rejects ``bool``, floats (also integral ones such as
    ``10.0``), strings and tensors.

    Args:
        name: the argument's name, for the message.
        value: the value given.
        min: smallest allowed value (inclusive), or None.
        max: largest allowed value (inclusive), or None.

    Raises:
        TypeError: if ``value`` is not an integer.
        ValueError: if it lies outside ``[min, max]``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_describe(value)}")
    value = int(value)
    if min is not None and value < min:
        raise ValueError(f"{name} must be >= {min}, got {value}")
    if max is not None and value > max:
        raise ValueError(f"{name} must be <= {max}, got {value}")
    return value


def check_optional_int(
    name: str, value: Any, *, min: int | None = None, max: int | None = None
) -> int | None:
    """:func:`check_int` that also accepts ``None`` (returned as is)."""
    if value is None:
        return None
    return check_int(name, value, min=min, max=max)


def check_bool(name: str, value: Any) -> bool:
    """Validates a flag: a Python or NumPy bool (not an int, string or tensor).

    Raises:
        TypeError: naming ``name`` and the value given.
    """
    if isinstance(value, bool):
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool"):
        return bool(value)
    raise TypeError(f"{name} must be a bool (True or False), got {_describe(value)}")


def check_real(
    name: str, value: Any, *, positive: bool = False, finite: bool = True
) -> float:
    """Validates a real scalar (Python/NumPy float or int, not bool) and returns a float.

    Raises:
        TypeError: if ``value`` is not a real number.
        ValueError: if it is NaN or infinite (with ``finite``) or not > 0 (with ``positive``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name} must be {'finite' if finite else 'a number'}, got {value}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def check_device(name: str, device: Any) -> torch.device | None:
    """``device`` (a string, ``torch.device`` or None) as a ``torch.device``, or None.

    Raises:
        TypeError: not a string or device.
        ValueError: a string torch does not know as a device (the message names ``name``).
    """
    if device is None or isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"{name} must be a str or torch.device, got {_describe(device)}")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"{name} must be a device such as 'cpu', 'cuda' or 'cuda:0', got "
                         f"{device!r}") from None


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Tensors


def check_floating(x: Tensor, name: str) -> None:
    """Raises ``TypeError`` unless ``x`` is a floating-point tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_rank(x: Tensor, name: str, layout: str) -> None:
    """Checks that ``x`` has as many dimensions as ``layout`` (e.g. ``"B, N, E"``) names."""
    ndim = len(layout.split(","))
    if x.dim() != ndim:
        raise ValueError(f"{name} must have shape ({layout}), got {tuple(x.shape)}")


def _value_name(v: float) -> str:
    if math.isnan(v):
        return "nan"
    return "inf" if v > 0 else "-inf"


def raise_non_finite(x: Tensor, name: str, where: Tensor | None = None,
                     what: str | None = None) -> None:
    """Raises ``ValueError`` locating the first NaN/inf of ``x`` (where ``where`` is True).

    The message names ``name``, the number of bad values, the first bad index and its value
    (``nan``, ``inf`` or ``-inf``, read from ``x`` itself). Returns if there is none.
    """
    bad = ~torch.isfinite(x)
    if where is not None:
        bad &= where
    if not bool(bad.any()):
        return
    first = tuple(int(i) for i in bad.nonzero()[0])
    at = f" at {what}" if what else ""
    ignored = "; values at masked-out positions are ignored" if where is not None else ""
    raise ValueError(
        f"{name} contains {int(bad.sum())} non-finite (NaN/Inf) value(s){at} (first at index "
        f"{first}, value {_value_name(float(x.detach()[first]))}){ignored}"
    )


def check_finite(x: Tensor, name: str, where: Tensor | None = None,
                 what: str | None = None) -> None:
    """Raises if ``x`` has a NaN or ±inf (only where ``where``, broadcastable to ``x``, is True).

    Values where ``where`` is False are never inspected: padding content never matters.

    Args:
        x: values.
        name: the user's argument, for the message.
        where: optional bool mask of the entries that are used.
        what: which entries are checked (e.g. ``"valid keys"``), for the message.

    Raises:
        ValueError: naming ``name``, the count, the first bad index and its value.
    """
    if tracing():
        ok = torch.isfinite(x) if where is None else torch.isfinite(x) | ~where
        torch._assert_async(ok.all(), f"{name} contains NaN/Inf values (checked inside "
                                      f"torch.compile; run eagerly for their index)")
        return
    if not data_checks():
        return
    raise_non_finite(x, name, where, what)


def masked_abs(x: Tensor, where: Tensor | None) -> Tensor:
    """``|x|`` with 0 where ``where`` (broadcastable to ``x``) is False."""
    a = x.abs()
    return a if where is None else a.masked_fill(~where, 0.0)


def finite_abs_max(
    values: list[tuple[Tensor, str, Tensor | None, str | None]],
) -> list[float] | None:
    """One pass (and one host sync) for several tensors: finiteness and largest magnitude.

    Args:
        values: ``(x, name, where, what)`` per tensor, as for :func:`check_finite`.

    Returns:
        The largest ``|x|`` of each (over the entries ``where`` selects; 0 for empty tensors),
        or None while data checks are off (tracing, transforms).

    Raises:
        ValueError: as :func:`check_finite`, for the first tensor with a NaN/inf.
    """
    if not data_checks():
        for x, name, where, what in values:
            check_finite(x, name, where, what)
        return None
    maxima = []
    for x, _, where, _ in values:
        if x.numel() == 0:
            maxima.append(x.new_zeros((), dtype=torch.float64))
        else:
            maxima.append(masked_abs(x, where).amax().to(torch.float64))
    result = torch.stack(maxima).tolist()  # NaN propagates through amax
    for m, (x, name, where, what) in zip(result, values):
        if not math.isfinite(m):
            raise_non_finite(x, name, where, what)
    return result


def fetch(*scalars: Tensor) -> list[float]:
    """The values of several 0-d tensors in one host transfer (one sync on an accelerator)."""
    dtype = scalars[0].dtype
    if any(s.dtype != dtype for s in scalars) or not dtype.is_floating_point:
        scalars = tuple(s.to(torch.float64) for s in scalars)
    return [float(v) for v in torch.stack(scalars).tolist()]


def check_k(k: int, name: str = "k") -> int:
    """``check_int(name, k, min=1)``: a number of neighbours."""
    return check_int(name, k, min=1)


def check_mask(mask: Tensor, name: str, shape: tuple[int, ...], layout: str) -> None:
    """Raises unless ``mask`` is a bool tensor broadcastable to ``shape`` (``layout`` names it)."""
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
    if not data_checks() or num_valid.numel() == 0:
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


# ---------------------------------------------------------------------------------------------
# Temperatures


def as_temperature(temperature: float | Tensor, target: torch.Size | tuple[int, ...],
                   name: str = "temperature", dtype: torch.dtype | None = None,
                   device: torch.device | None = None) -> Tensor:
    """Validates a temperature and returns it as a tensor broadcastable to ``target``.

    Every positive finite temperature is accepted: it is validated in the precision it was
    given in, then converted to ``dtype`` and clamped to that dtype's normal range
    ``[finfo.tiny, finfo.max]`` (a subnormal or underflowing temperature becomes the smallest
    normal one, where the relaxation already equals hard kNN; a huge one the largest, where
    it equals uniform weights). Values inside the range are unchanged, bit for bit, and keep
    their gradient.

    Raises:
        TypeError: if it is neither a real number nor a floating-point tensor.
        ValueError: if it is not broadcastable to ``target``, or has a value that is NaN,
            infinite, zero or negative.
    """
    target = torch.Size(target)
    info = torch.finfo(dtype or torch.get_default_dtype())
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
        if device is not None and temperature.is_meta != (torch.device(device).type == "meta"):
            raise ValueError(f"{name} is on device {temperature.device} but the inputs are on "
                             f"{device}; meta and real tensors cannot be mixed")
        if data_checks() and temperature.numel():
            bad = torch.isnan(temperature) | (temperature <= 0) | torch.isinf(temperature)
            if bool(bad.any()):
                value = temperature.detach()[bad].flatten()[0].item()
                raise ValueError(f"{name} must be positive and finite, got {value}")
        t = temperature.to(dtype=dtype, device=device)
        return t.clamp(min=info.tiny, max=info.max)
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"{name} must be a float or a tensor, got {type(temperature).__name__}")
    try:
        value = float(temperature)
    except OverflowError:  # an int beyond float range: positive and finite, but huge
        value = math.inf if temperature > 0 else -math.inf
        if value > 0:
            return torch.tensor(info.max, dtype=dtype, device=device)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    value = min(max(value, info.tiny), info.max)
    return torch.tensor(value, dtype=dtype, device=device)


#: Logits stay below ``finfo.max / LOGIT_HEADROOM`` in magnitude, also after k rounds.
LOGIT_HEADROOM = 64.0

#: A floor is harmless while it is below ``MAX_FLOOR · eps · min(max|score|, 1)``: distinct
#: scores (gaps ≳ eps·max|score|) then stay saturated, and a saturated candidate's push-down
#: (gap / t in score units) still exceeds the whole score range, as for ``t → 0``. Above it
#: the computation needs a wider dtype.
MAX_FLOOR = 1e-2


def temperature_floor(score_bound: Tensor | float, k: int, dtype: torch.dtype) -> Tensor | float:
    """Smallest temperature at which ``scores / t`` and the k rounds cannot overflow ``dtype``.

    With ``|scores| <= score_bound`` and ``t >= (score_bound + 1)·LOGIT_HEADROOM·(k + 1) / max``
    every logit ``scores / t``, their differences and every push-down of the k rounds stay
    below ``max / 32`` in magnitude (a consumed candidate may still go to −inf, which is its
    t → 0 limit). There the relaxation of distinct scores is already one-hot and saturated
    candidates are consumed, so raising
    ``t`` to the floor changes nothing but overflow, as long as it stays below
    :data:`MAX_FLOOR` (scores much closer than ``eps × max|score|`` may then be treated as
    ties). Callers widen the dtype (or refuse) above it.

    Args:
        score_bound: upper bound of ``|scores|`` (a float or a tensor of per-row bounds).
        k: number of rounds.
        dtype: the dtype the relaxation runs in.

    Returns:
        The floor, at least ``finfo(dtype).tiny``; a tensor if ``score_bound`` is one.
    """
    info = torch.finfo(dtype)
    scale = LOGIT_HEADROOM * (k + 1) / info.max
    if isinstance(score_bound, Tensor):
        return ((score_bound + 1.0) * scale).clamp(min=info.tiny)
    return max((score_bound + 1.0) * scale, info.tiny)


def floor_temperature(t: Tensor, floor: Tensor | float) -> Tensor:
    """``t`` raised to ``floor`` where it is below (the floor carries no gradient)."""
    if isinstance(floor, Tensor):
        floor = floor.detach().to(t.dtype)
        return torch.where(t >= floor, t, floor)
    return t.clamp(min=floor)


def safe_temperature(
    t: Tensor, bound: Tensor, k: int, dtype: torch.dtype, largest: float | None,
    smallest_t: float | None,
) -> Tensor | None:
    """``t`` floored where ``scores / t`` would overflow ``dtype``; None if ``dtype`` is too narrow.

    Args:
        t: temperatures (in ``dtype``), broadcastable to ``bound``.
        bound: per-row upper bounds of ``|scores|``.
        k: number of rounds.
        dtype: the dtype the relaxation runs in.
        largest: ``bound.max()`` and ``smallest_t``: ``t.min()`` as host floats, or None
            while data checks are off (then the per-row floor is always applied).

    Returns:
        ``t`` itself where no row needs a floor (bit for bit), ``t`` with the per-row floor
        of :func:`temperature_floor`, or None where that floor could change the result (see
        :data:`MAX_FLOOR`; the caller widens the dtype or raises ``OverflowError``). All-zero
        scores (every candidate tied) take any floor.
    """
    if largest is None or smallest_t is None:
        return floor_temperature(t, temperature_floor(bound, k, dtype))
    floor = temperature_floor(largest, k, dtype)
    if smallest_t >= floor:
        return t
    if largest > 0 and floor > MAX_FLOOR * torch.finfo(dtype).eps * min(largest, 1.0):
        return None
    return floor_temperature(t, temperature_floor(bound, k, dtype))


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype the relaxation runs in: float64 if any input is, else float32."""
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32
