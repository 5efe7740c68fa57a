r"""Fused k-round relaxation with a hand-derived backward (the fast path of the core).

Same function as :func:`n3seq.relaxation.straightforward_continuous_knn`, computed with fewer passes
over the (rows × candidates) matrices. Per round, with ``L`` the logits shifted so that the
row maximum (index ``a``) is 0, ``P = exp(L)`` with ``P_a`` set to 0, ``S_o = Σ P`` and
``S = 1 + S_o``:

    w = P / S (w_a = 1 / S),   u = log(1 − w) = log1p(−w),   u_a = log(S_o / S) if w_a > ½,
    L ← L + u / t.

``S_o`` is summed without ``P_a``, so ``1 − w_a = S_o / S`` has no cancellation even when
``w_a`` rounds to 1 (the reference path takes a logsumexp of the other weights for the same
reason). Backward, with ``g`` the gradient of the next round's logits, ``c = g / t`` and
``r = w / (1 − w)`` (``r_a := 0``), the gradient of round j's logits is

    g ← g + w ⊙ (g_w − ⟨w, g_w⟩ + ⟨c, r⟩ + c_a / S_o) − c ⊙ r   (m ≠ a),
    g_a ← g_a + w_a (g_w,a − ⟨w, g_w⟩ + ⟨c, r⟩ − c_a)

(the terms ``c_a r_a`` that blow up as ``w_a → 1`` cancel analytically and are never formed),
and ``∂/∂t`` collects ``−⟨g, u⟩ / t²`` per round and ``−⟨g, s⟩ / t²`` from ``L¹ = s / t``
(``u`` and ``s`` taken relative to their value at the round's argmax, which changes nothing
since ``g`` sums to 0 over a row, but makes tied candidates cancel exactly).

Callers pass temperatures in the dtype's normal range, floored where ``scores / t`` would
overflow (see :func:`n3seq._checks.safe_temperature`); no input checks happen here.
Only the k weight matrices and the k ``u`` matrices of the rows at hand are stored; callers
chunk rows so that this stays small.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

Fallback = list[tuple[Tensor, Tensor] | None]


def _rounds(
    logits: Tensor, k: int, t: Tensor, keep_u: bool,
    consume: Callable[[int, Tensor], None] | None = None,
) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor, Fallback]:
    """Runs the k rounds in place on ``logits`` (``scores / t``, −inf = excluded).

    Returns the weights ``(..., k, O)``, the ``u`` matrices (rounds 1 … k − 1, when
    ``keep_u``), the argmax indices ``(..., k)``, ``S_o`` ``(..., k)`` (0 on rows computed
    exactly) and, per round, those rows with the softmax of their other logits (or None).
    With ``consume``, the weights are not kept: ``consume(j, w)`` gets round j's weights
    ``(..., O)`` in a buffer the next round overwrites, and None is returned in their place.
    """
    shape = logits.shape
    if consume is None:
        weights = logits.new_empty(*shape[:-1], k, shape[-1])
    else:
        weights, buffer = None, torch.empty_like(logits)
    us = logits.new_empty(*shape[:-1], max(k - 1, 1), shape[-1]) if keep_u else None
    argmax = torch.empty(*shape[:-1], k, dtype=torch.long, device=logits.device)
    s_other = logits.new_empty(*shape[:-1], k)
    scratch = None if keep_u else torch.empty_like(logits)
    fallback: Fallback = [None] * k
    # exp() of arguments below log(tiny) takes a slow path (≈15× on x86) and returns 0 or
    # denormals. Flooring its argument where every weight would be < e·tiny changes nothing
    # that float arithmetic can see downstream; the logits themselves are never clamped.
    floor = math.log(torch.finfo(logits.dtype).tiny) + math.log(shape[-1]) + 1.0
    # Below this S_o, the floored terms (<= O·e^floor in all) may exceed its rounding error.
    so_min = shape[-1] * math.exp(floor) / torch.finfo(logits.dtype).eps
    zero_below = 2.0 * math.exp(floor)
    excluded = logits == float("-inf")
    floors = None
    if bool(excluded.any()):
        floors = torch.full_like(logits, floor).masked_fill_(excluded, float("-inf"))
    del excluded
    lg = logits
    for j in range(k):
        top, a = lg.max(dim=-1, keepdim=True)
        lg.sub_(top)
        w = buffer if weights is None else weights[..., j, :]
        if floors is None:
            torch.clamp(lg, min=floor, out=w)
        else:
            torch.maximum(lg, floors, out=w)
        w.exp_()
        # Floored terms become exact zeros: saturated rows then get exactly zero gradients.
        torch.nn.functional.threshold_(w, zero_below, 0.0)
        w.scatter_(-1, a, 0.0)
        so = w.sum(-1, keepdim=True)
        s = so + 1.0
        w.div_(s)
        w_a = s.reciprocal()
        w.scatter_(-1, a, w_a)
        argmax[..., j] = a[..., 0]
        s_other[..., j] = so[..., 0]
        if consume is not None:
            consume(j, w)
        if j + 1 == k:
            break
        u = us[..., j, :] if us is not None else scratch
        torch.neg(w, out=u).log1p_()
        u_a = torch.where(w_a > 0.5, so.log() - s.log(), torch.log1p(-w_a))
        small = so < so_min
        if bool(small.any()):
            u_a, rows, q = _exact_small_rows(lg, a, s, u_a, small, floor, need_q=keep_u)
            so = so.reshape(-1).index_fill(0, rows, 0.0).view_as(so)
            s_other[..., j] = so[..., 0]
            if q is not None:  # only the backward needs it
                fallback[j] = (rows, q)
        u.scatter_(-1, a, u_a)
        lg.addcdiv_(u, t)
    return weights, us, argmax, s_other, fallback


def _exact_small_rows(
    lg: Tensor, a: Tensor, s: Tensor, u_a: Tensor, small: Tensor, floor: float,
    need_q: bool = True,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Exact ``u_a = logsumexp(L_others) − log S`` on the rows where ``S_o`` is tiny.

    There the floored ``exp`` arguments (each contributing up to ``e^floor``) could be a
    visible part of ``S_o``; a logsumexp over the other logits of those rows, shifted by
    *their* maximum, is exact. Its own ``exp`` arguments are floored relative to that maximum
    (the floored terms, < O·e^floor in all against a largest term of 1, are invisible, and
    far-negative arguments would take ``exp``'s ~35× slower path). Also returns the row
    indices and the softmax ``q`` of their other logits (``q_a = 0``), which the backward
    needs in place of ``P / S_o``.
    """
    width = lg.shape[-1]
    rows = small.reshape(-1).nonzero().squeeze(1)
    sub = lg.reshape(-1, width).index_select(0, rows)
    sub.scatter_(-1, a.reshape(-1, 1).index_select(0, rows), float("-inf"))
    top = sub.amax(-1, keepdim=True)
    top = torch.where(top > float("-inf"), top, 0.0)  # rows with no other candidate
    e = sub.sub_(top).clamp_(min=floor).exp_()
    torch.nn.functional.threshold_(e, 2.0 * math.exp(floor), 0.0)
    total = e.sum(-1, keepdim=True)
    q = e.div_(total).nan_to_num_(0.0) if need_q else None
    u_flat = u_a.reshape(-1).clone()
    u_flat[rows] = (top + total.log())[:, 0] - s.reshape(-1)[rows].log()
    return u_flat.view_as(u_a), rows, q


class _FusedContinuousKNN(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, scores: Tensor, k: int, t: Tensor, valid: Tensor | None) -> Tensor:
        if valid is None:
            logits = scores / t
        else:
            logits = torch.where(valid, scores / t, float("-inf"))
        keep = any(ctx.needs_input_grad)
        weights, us, argmax, s_other, fallback = _rounds(logits, k, t, keep_u=keep)
        del logits
        ctx.k = k
        ctx.fallback = fallback
        ctx.save_for_backward(weights, us, argmax, s_other, scores, t, valid)
        return weights

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None, None]:
        weights, us, argmax, s_other, scores, t, valid = ctx.saved_tensors
        g = None
        gt = torch.zeros_like(s_other[..., :1])
        for j in reversed(range(ctx.k)):
            w = weights[..., j, :]
            gw = grad[..., j, :]
            inner = gw - (w * gw).sum(-1, keepdim=True)
            if g is None:
                g = inner.mul_(w)
                continue
            a = argmax[..., j:j + 1]
            so = s_other[..., j:j + 1]
            c = g / t
            # ⟨c, u⟩ = ⟨c, u − u_a⟩ (the gradient of a round's logits sums to 0 over a row):
            # tied candidates share u, so their terms cancel exactly instead of to rounding.
            # Only where w_a <= 1/2 (ties); a saturated top's u_a is far from the others'.
            u = us[..., j, :]
            u_ref = torch.where(weights[..., j, :].gather(-1, a) <= 0.5, u.gather(-1, a), 0.0)
            gt -= (c * (u - u_ref)).sum(-1, keepdim=True) / t
            cr = w / (1.0 - w)
            cr.scatter_(-1, a, 0.0).mul_(c)
            c_a = c.gather(-1, a)
            w_a = w.gather(-1, a)
            beta = torch.where(so > 0, c_a / so.clamp(min=torch.finfo(so.dtype).tiny), 0.0)
            inner += cr.sum(-1, keepdim=True)
            # The row max gets its own formula: adding beta·w_a and subtracting it again would
            # lose digits when beta is large (w_a → 1).
            g_a = g.gather(-1, a) + w_a * (inner.gather(-1, a) - c_a)
            g = g + (inner + beta).mul_(w) - cr
            g.scatter_(-1, a, g_a)
            if ctx.fallback[j] is not None:
                rows, q = ctx.fallback[j]
                coef = (c_a * w_a).reshape(-1)[rows]
                g.view(-1, g.shape[-1]).index_add_(0, rows, coef[:, None] * q)
        assert g is not None
        s = scores if valid is None else scores.masked_fill(~valid, 0.0)
        # ⟨g, s⟩ = ⟨g, s − s_a⟩ with s_a the first round's top score: no cancellation of a
        # common offset (the global path's scores carry ‖q‖²), exact zeros at exact ties.
        # Divide twice: t² underflows at tiny t, and saturated rows bring g = 0 (0 · inf).
        gt -= (g * (s - s.gather(-1, argmax[..., :1]))).sum(-1, keepdim=True) / t / t
        gs = g / t
        if valid is not None:
            gs = gs.masked_fill(~valid, 0.0)
        grad_t = None
        if ctx.needs_input_grad[2]:
            grad_t = _sum_to(gt, t.shape)
        return (gs if ctx.needs_input_grad[0] else None), None, grad_t, None


def _sum_to(x: Tensor, shape: torch.Size) -> Tensor:
    """Reduces a broadcast gradient back to ``shape``."""
    while x.dim() > len(shape):
        x = x.sum(0)
    dims = [i for i, (n, m) in enumerate(zip(x.shape, shape)) if m == 1 and n != 1]
    return x.sum(dims, keepdim=True) if dims else x


def fused_continuous_knn(
    scores: Tensor, k: int, temperature: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Drop-in for :func:`n3seq.relaxation.straightforward_continuous_knn` (no input checks).

    Args:
        scores: ``(..., O)`` floating scores.
        k: rounds.
        temperature: positive tensor broadcastable to ``scores[..., :1]``.
        mask: optional bool ``(..., O)``, ``True`` = valid.

    Returns:
        ``(..., k, O)`` weights.
    """
    t = temperature.expand(*scores.shape[:-1], 1) if temperature.dim() else temperature
    if mask is not None:
        mask = mask.expand_as(scores)
    if not (torch.is_grad_enabled() and (scores.requires_grad or t.requires_grad)):
        with torch.no_grad():
            logits = scores / t if mask is None else torch.where(mask, scores / t, -torch.inf)
            return _rounds(logits, k, t, keep_u=False)[0]
    return _FusedContinuousKNN.apply(scores, k, t, mask)


@torch.no_grad()
def fused_knn_sums(
    scores: Tensor, k: int, temperature: Tensor, values: Tensor, mask: Tensor | None = None
) -> Tensor:
    """The k weighted sums of ``values`` under the relaxation's weights, without autograd.

    Equals ``fused_continuous_knn(scores, k, t, mask) @ values`` (round by round, bitwise)
    but never holds the k weight matrices: each round's weights are multiplied into the
    output while still in cache, and one buffer serves every round.

    Args:
        scores: ``(B, n, O)`` floating scores.
        k: rounds.
        temperature: positive tensor broadcastable to ``scores[..., :1]``.
        values: ``(B, O, F)``.
        mask: optional bool ``(B, n, O)``, ``True`` = valid.

    Returns:
        ``(B, n, k, F)``.
    """
    t = temperature.expand(*scores.shape[:-1], 1) if temperature.dim() else temperature
    logits = scores / t if mask is None else torch.where(mask, scores / t, -torch.inf)
    out = values.new_empty(*scores.shape[:-1], k, values.shape[-1])

    def consume(j: int, w: Tensor) -> None:
        out[..., j, :] = torch.matmul(w, values)

    _rounds(logits, k, t, keep_u=False, consume=consume)
    return out
