"""The continuous relaxation of k-nearest-neighbour selection (Plötz & Roth, 2018, eq. 6-8).

For scores ``s`` (higher = closer) and temperature ``t`` the k weight vectors are

    a¹ = s,    wʲ = softmax(aʲ / t),    aʲ⁺¹ = aʲ + log(1 − wʲ),    j = 1 … k.

Each round is a softmax; ``log(1 − wʲ)`` pushes down what earlier rounds already took. As
``t → 0`` round j becomes the one-hot vector of the j-th largest score (:func:`hard_knn`).

Temperatures. Every positive finite temperature is accepted and gives finite weights. Below
the dtype's smallest normal number, or where ``scores / t`` would overflow, the temperature is
raised to the smallest one at which the logits stay finite (see
:func:`n3seq._checks.temperature_floor`); the weights there are already the hard kNN
one-hot vectors and their gradients exactly zero, so nothing but overflow changes.

Ill-conditioned regime. Where valid scores differ by much less than a temperature ``t ≪ 1``
(exact ties included), each round after the first amplifies their differences by about
``1/t``: exactly tied scores stay softly tied for every t (their temperature gradient is
exactly 0), but the gradients w.r.t. the scores are of order ``t^-j`` in round j, which for
tiny t exceeds the dtype's range (inf), and in float32 the values of rounds 2+ are only as
accurate as float32 resolves the differences. This is the function itself, not rounding;
everywhere else values and gradients are finite and accurate.

Tracing and transforms. Eager calls validate their inputs (NaN/inf at valid candidates,
masks, counts). ``torch.compile`` keeps the NaN/inf check as an in-graph assertion;
``torch.jit.trace`` cannot record any of the checks, so a traced function does not validate
its inputs (a warning says so when tracing). ``torch.func`` transforms (``vmap``, ``grad``,
``jacrev``, ...) are supported by :func:`continuous_knn`, :func:`hard_knn` and
:func:`n3seq.knn_aggregate`: inside them the value checks are skipped and the straightforward
(unfused, unchunked) relaxation runs. ``torch.jit.script`` is not supported (the modules
refuse it with a clear error; use ``torch.compile`` or ``torch.export``).

Implementations. ``backend="fused"`` (default; :mod:`n3seq._fused`, fewer passes and a
hand-derived backward) and ``backend="straightforward"`` (:func:`straightforward_continuous_knn`,
the readable recursion with plain autograd) compute the same function; :func:`choose_relaxation`
runs the one asked for where it can (:func:`can_run_fused`) and the straightforward one
otherwise. The naive test oracle lives apart, in :mod:`n3seq.reference`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from n3seq._checks import (
    as_temperature,
    check_enough_candidates,
    check_finite,
    check_floating,
    check_k,
    check_mask,
    compute_dtype,
    data_checks,
    fetch,
    masked_abs,
    meta_aware,
    no_autocast,
    plain_path,
    raise_non_finite,
    safe_temperature,
    tracing,
)
from n3seq._dispatch import choose_backend
from n3seq._fused import fused_continuous_knn

#: Raised by the modules' ``__prepare_scriptable__``: TorchScript cannot compile n3seq.
SCRIPT_UNSUPPORTED = (
    "{} does not support torch.jit.script (n3seq uses Python features TorchScript cannot "
    "compile); use torch.compile or torch.export instead"
)


def _log1m_softmax(log_w: Tensor) -> Tensor:
    """``log(1 − w)`` for ``log_w = log_softmax(·)``, accurate for every w in [0, 1].

    Where w ≤ 1/2, ``log1p(−w)`` is exact. At most one weight per row exceeds 1/2; for it,
    ``1 − w`` is the sum of the *other* weights, taken as a logsumexp: no cancellation even when
    w rounds to 1. Tied candidates (each w ≤ 1/2) thus share one formula and stay exactly tied.
    Both branches are finite wherever ``torch.where`` evaluates them, so the gradient has no
    0·inf terms.
    """
    columns = torch.arange(log_w.shape[-1], device=log_w.device)
    is_max = (columns == log_w.argmax(dim=-1, keepdim=True)) & (log_w > -math.log(2.0))
    others = log_w.masked_fill(is_max, float("-inf"))
    log1m_others = torch.log1p(-others.exp())
    log1m_max = torch.logsumexp(others, dim=-1, keepdim=True)
    return torch.where(is_max, log1m_max, log1m_others)


class _Reciprocal(torch.autograd.Function):
    """``1 / t`` whose backward is ``−(g / t) / t``, never ``g · (1 / t²)``.

    At tiny t (learned temperatures do get there) ``1 / t²`` overflows float32 and saturated
    rows bring ``g = 0``: ``0 · inf`` would make the temperature gradient NaN. Written with
    ``setup_context`` and a generated vmap rule, so that ``torch.func`` transforms work.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(t: Tensor) -> Tensor:
        return t.reciprocal()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (inv_t,) = ctx.saved_tensors
        return -(grad * inv_t) * inv_t


#: The implementations of the relaxation, in order of preference (see :func:`choose_relaxation`).
RELAXATION_BACKENDS = ("fused", "straightforward")
RelaxationBackend = Literal["fused", "straightforward"]

#: Where the temperature enters: ``"paper"`` divides every round's logits by ``t``;
#: ``"official"`` (the N³ authors' released code) divides the scores once and runs at ``t = 1``.
Placement = Literal["official", "paper"]


def straightforward_continuous_knn(
    scores: Tensor, k: int, temperature: Tensor, mask: Tensor | None = None
) -> Tensor:
    """The relaxation as written in the paper, in log space: the readable definition.

    No input checks, no dtype handling; plain autograd (composable with ``torch.func``).
    :mod:`n3seq._fused` computes the same function faster (the ``"fused"`` backend).
    """
    inv_t = _Reciprocal.apply(temperature)
    if mask is None:
        logits = scores * inv_t
    else:
        # Excluded candidates never meet −inf / t: that would give NaN temperature gradients.
        logits = torch.where(mask, scores.masked_fill(~mask, 0.0) * inv_t, float("-inf"))
    weights = []
    for j in range(k):
        log_w = torch.log_softmax(logits, dim=-1)
        weights.append(log_w.exp())
        if j + 1 < k:
            logits = logits + _log1m_softmax(log_w) * inv_t
    return torch.stack(weights, dim=-2)


def can_run_fused() -> bool:
    """Whether the ``"fused"`` relaxation (:mod:`n3seq._fused`) can run now.

    Not inside ``torch.func`` transforms (its hand-written backward has no transform rules),
    under ``torch.jit.trace`` (it branches on tensor values, which a trace would freeze) or on
    ``meta`` tensors (no values); the ``"straightforward"`` one runs everywhere.
    """
    return not plain_path()


def choose_relaxation(requested: str = "fused") -> RelaxationBackend:
    """The relaxation backend to run: ``requested`` where it can run, else ``"straightforward"``.

    Raises:
        ValueError: if ``requested`` is not one of :data:`RELAXATION_BACKENDS`.
    """
    return choose_backend("backend", requested, {"fused": can_run_fused(),
                                                 "straightforward": True})  # type: ignore


def relax(
    scores: Tensor, k: int, temperature: Tensor, valid: Tensor | None,
    backend: RelaxationBackend,
) -> Tensor:
    """The ``(..., k, O)`` weights by a chosen ``backend`` (no checks; see :func:`relax_scores`)."""
    if backend == "fused":
        return fused_continuous_knn(scores, k, temperature, valid)
    return straightforward_continuous_knn(scores, k, temperature, valid)


def relax_scores(
    scores: Tensor,
    k: int,
    temperature: Tensor,
    valid: Tensor | None = None,
    *,
    placement: Placement = "paper",
    score_transform: Callable[[Tensor], Tensor] | None = None,
    backend: RelaxationBackend = "fused",
) -> Tensor:
    """:func:`continuous_knn` without input checks: the entry for callers that checked theirs.

    Runs in float32 (float64 for float64 scores) with autocast off, whatever the scores' dtype,
    and returns the weights in that dtype. No host synchronisation; the temperature must be
    positive and finite with finite logits (no floor is applied here).

    Args:
        scores: ``(..., O)`` similarities, higher = closer.
        k: rounds.
        temperature: positive tensor broadcastable to ``scores[..., :1]``.
        valid: optional bool ``(..., O)``, ``True`` = valid candidate.
        placement: ``"paper"`` (``t`` in every round) or ``"official"`` (the authors' code:
            ``scores / t`` once, then ``t = 1``).
        score_transform: applied to the scores first (e.g. the authors' batch-norm).
        backend: the preferred implementation (see :func:`choose_relaxation`).

    Returns:
        ``(..., k, O)`` weights in the dtype of the (transformed) scores.
    """
    backend = choose_relaxation(backend)
    if score_transform is not None:
        scores = score_transform(scores)
    if placement == "official":
        scores, temperature = scores / temperature, scores.new_ones(())
    dtype = compute_dtype(scores)
    t = temperature.to(dtype=dtype, device=scores.device)
    with no_autocast(scores.device):
        weights = relax(scores.to(dtype), k, t, valid, backend)
    return weights.to(scores.dtype)


def _validate_scores(
    scores: Tensor, k: int, mask: Tensor | None
) -> tuple[int, Tensor | None, int]:
    """Checks types, shapes and counts of ``scores (..., O)``, ``k`` and ``mask``.

    Returns ``k`` as an int, the mask expanded to ``scores`` and the number of rows.
    """
    check_floating(scores, "scores")
    if scores.dim() < 1:
        raise ValueError("scores must have shape (..., O), got a 0-d tensor")
    k = check_k(k)
    rows = math.prod(scores.shape[:-1])
    if mask is not None:
        check_mask(mask, "mask", tuple(scores.shape), "..., O")
        mask = mask.expand_as(scores)
    if rows == 0:
        return k, mask, 0
    if mask is None:
        if scores.shape[-1] < k:
            raise ValueError(
                f"k={k} is larger than the number of candidates O={scores.shape[-1]} "
                f"(scores shape {tuple(scores.shape)})"
            )
    else:
        check_enough_candidates(mask.sum(-1), k, "mask")
    return k, mask, rows


def _prepare(
    scores: Tensor, k: int, temperature: float | Tensor, mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Scores and temperature in the compute dtype, checked, with a safe temperature.

    One host sync: the largest valid ``|score|`` (NaN/inf check) and the smallest
    temperature. Float32 scores whose ``scores / t`` would overflow even at the largest
    admissible floor run in float64; float64 ones raise ``OverflowError``.
    """
    what = "valid candidates" if mask is not None else None
    dtype = compute_dtype(scores)
    while True:
        t = as_temperature(temperature, (*scores.shape[:-1], 1), dtype=dtype,
                           device=scores.device)
        s = scores.to(dtype)
        bound = masked_abs(s, mask).amax(-1, keepdim=True)  # NaN where a valid score is
        largest = smallest = None
        if data_checks():
            largest, smallest = fetch(bound.max(), t.min())
            if not math.isfinite(largest):
                raise_non_finite(scores, "scores", mask, what)
        elif tracing():
            check_finite(scores, "scores", mask)
        safe = safe_temperature(t, bound, k, dtype, largest, smallest)
        if safe is not None:
            return s, safe
        if dtype == torch.float64:
            raise OverflowError(
                f"scores / temperature overflows float64: valid scores reach |{largest:.3g}| "
                f"at temperature {smallest:.3g}; scale the scores down or raise the "
                f"temperature"
            )
        dtype = torch.float64


@meta_aware
def continuous_knn(
    scores: Tensor,
    k: int,
    temperature: float | Tensor = 1.0,
    mask: Tensor | None = None,
    *,
    backend: RelaxationBackend = "fused",
) -> Tensor:
    r"""Continuous (soft) k-nearest-neighbour selection weights.

    Runs ``k`` rounds of ``wʲ = softmax(aʲ / t)``, ``aʲ⁺¹ = aʲ + log(1 − wʲ)`` starting from
    ``a¹ = scores``, in log space. Differentiable in ``scores`` and ``temperature``; as the
    temperature goes to 0 it equals :func:`hard_knn`.

    The N³ authors' released code divides the scores by ``t`` once and then runs the recursion
    at ``t = 1``; that function is ``continuous_knn(scores / t, k)`` (see the docs page
    *The relaxation* for how the two differ).

    Args:
        scores: similarities, higher = closer (e.g. negative squared distances).
        k: number of neighbours (rounds), ``1 <= k <= number of valid candidates``.
        temperature: a positive float, or a positive tensor broadcastable to
            ``scores[..., :1]`` (one temperature per row). Any positive finite value works
            (see the module docstring for tiny ones).
        mask: optional bool tensor broadcastable to ``scores``; ``True`` marks valid
            candidates. Excluded candidates get weight exactly 0 and zero gradient; their
            scores are never inspected (NaN or inf there is fine).
        backend: ``"fused"`` (default: fewer passes, hand-derived backward) or
            ``"straightforward"`` (the readable recursion, plain autograd); both compute the
            same function. Where the fused one cannot run (:func:`can_run_fused`: inside
            ``torch.func`` transforms, ``torch.jit.trace``, on meta tensors) the
            straightforward one runs.

    Returns:
        Weights of shape ``(..., k, O)``; row ``j`` sums to 1 over the valid candidates.
        No rows (e.g. a batch of 0) gives an empty result.

    Raises:
        TypeError: if ``scores`` is not a floating-point tensor, ``k`` not an int, ``mask``
            not a bool tensor or ``temperature`` neither a number nor a floating tensor.
        ValueError: if ``backend`` is unknown, ``k < 1`` or exceeds the (valid) candidates of
            a row, a valid score is NaN or inf (the message names the first index), a
            temperature is not positive and finite, or a shape does not broadcast.

    Shape:
        - scores: :math:`(..., O)`
        - temperature: scalar or :math:`(..., 1)`
        - mask: :math:`(..., O)`
        - output: :math:`(..., k, O)`

    Example:
        >>> scores = torch.tensor([[3.0, 1.0, 2.0]])
        >>> continuous_knn(scores, k=2, temperature=1e-3).round()
        tensor([[[1., 0., 0.],
                 [0., 0., 1.]]])
    """
    k, mask, rows = _validate_scores(scores, k, mask)
    backend = choose_relaxation(backend)
    if rows == 0:
        as_temperature(temperature, (*scores.shape[:-1], 1))
        return scores.new_zeros(*scores.shape[:-1], k, scores.shape[-1])
    s, t = _prepare(scores, k, temperature, mask)
    with no_autocast(scores.device):
        weights = relax(s, k, t, mask, backend)
    return weights.to(scores.dtype)


@meta_aware
def hard_knn(scores: Tensor, k: int, mask: Tensor | None = None) -> Tensor:
    """One-hot selection of the k largest scores, in decreasing order.

    The ``t → 0`` limit of :func:`continuous_knn`. Ties are broken by the lowest index.

    Args:
        scores: similarities, higher = closer.
        k: number of neighbours.
        mask: optional bool tensor broadcastable to ``scores``; ``True`` = valid candidate.

    Returns:
        One-hot weights of shape ``(..., k, O)`` in ``scores.dtype``.

    Shape:
        - scores: :math:`(..., O)`
        - output: :math:`(..., k, O)`

    Example:
        >>> hard_knn(torch.tensor([1.0, 3.0, 2.0]), k=2)
        tensor([[0., 1., 0.],
                [0., 0., 1.]])
    """
    k, mask, rows = _validate_scores(scores, k, mask)
    if rows == 0:
        return scores.new_zeros(*scores.shape[:-1], k, scores.shape[-1])
    check_finite(scores, "scores", mask, "valid candidates" if mask is not None else None)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    # A stable descending sort keeps equal scores in index order: lowest index wins ties.
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
    one_hot = torch.zeros(*scores.shape[:-1], k, scores.shape[-1], dtype=scores.dtype,
                          device=scores.device)
    return one_hot.scatter(-1, order.unsqueeze(-1), 1.0)  # out of place: vmap-able


class ContinuousKNN(nn.Module):
    """Module form of :func:`continuous_knn` with a fixed ``k`` and temperature.

    Args:
        k: number of neighbours.
        temperature: positive float used when ``forward`` is not given one.

    Example:
        >>> ContinuousKNN(k=2)(torch.randn(4, 10)).shape
        torch.Size([4, 2, 10])
    """

    def __init__(self, k: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.k = check_k(k)
        as_temperature(temperature, torch.Size([]))
        self.temperature = temperature

    def __prepare_scriptable__(self) -> nn.Module:
        raise RuntimeError(SCRIPT_UNSUPPORTED.format(type(self).__name__))

    def forward(
        self, scores: Tensor, temperature: float | Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        t = self.temperature if temperature is None else temperature
        return continuous_knn(scores, self.k, t, mask)

    def extra_repr(self) -> str:
        return f"k={self.k}, temperature={self.temperature}"
