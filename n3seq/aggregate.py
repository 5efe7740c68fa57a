"""Soft k-nearest-neighbour aggregation over token sets: ``(B, N, E)`` queries → ``(B, N, k, F)``.

Queries are processed in chunks; under autograd each chunk is recomputed in backward
(checkpointed, or by the candidates path's own backward), so the k weight matrices of a chunk
are not stored for every query. Peak memory is then the output, the gradients and one chunk's
working set, whatever N.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from n3seq._checks import (
    as_temperature,
    check_enough_candidates,
    check_finite,
    check_floating,
    check_k,
    check_mask,
    check_rank,
    compute_dtype,
)
from n3seq._fused import fused_continuous_knn, fused_knn_sums
from n3seq.relaxation import continuous_knn_unchecked

#: Elements of one chunk's (queries × candidates) score matrix; about 4 MiB in float32, so that
#: a chunk's k rounds run in cache (larger chunks were slower on CPU, not faster).
CHUNK_ELEMENTS = 1 << 20


#: Internal switch between the fused relaxation (``n3seq._fused``, fast) and the straightforward
#: one (``continuous_knn_unchecked``); tests check that both give the same results.
_USE_FUSED = True


def _relax(scores: Tensor, k: int, t: Tensor, valid: Tensor | None) -> Tensor:
    if _USE_FUSED:
        return fused_continuous_knn(scores, k, t, valid)
    return continuous_knn_unchecked(scores, k, t, valid)


def window_candidates(
    num_tokens: int,
    radius: int,
    lengths: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Indices of a 1-D sliding window of ``2·radius + 1`` tokens around each token.

    Near the borders the window is shifted inward rather than cut, so every query keeps the
    same number of candidates (``window_candidates(10, 2)[0, 0]`` is ``[0, 1, 2, 3, 4]``).

    Args:
        num_tokens: sequence length N (must be >= 2·radius + 1).
        radius: half width r >= 0.
        lengths: optional ``(B,)`` true lengths of right-padded sequences; windows are then
            shifted inside ``[0, length)`` so they never reach padding (padded queries get
            the last window of their sequence).
        device: device of the returned tensor.

    Returns:
        LongTensor of shape ``(1, N, 2r + 1)`` (``(B, N, 2r + 1)`` with ``lengths``), usable
        as ``candidates`` of :func:`knn_aggregate`; each row is sorted and contiguous.

    Example:
        >>> window_candidates(5, 1)[0]
        tensor([[0, 1, 2],
                [0, 1, 2],
                [1, 2, 3],
                [2, 3, 4],
                [2, 3, 4]])
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    width = 2 * radius + 1
    if num_tokens < width:
        raise ValueError(
            f"num_tokens={num_tokens} is smaller than the window 2*radius+1={width} "
            f"(radius={radius})"
        )
    offsets = torch.arange(width, device=device)
    if lengths is None:
        start = (torch.arange(num_tokens, device=device) - radius).clamp(0, num_tokens - width)
        return (start[:, None] + offsets)[None]
    lengths = lengths.to(device=device, dtype=torch.long)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must have shape (B,), got {tuple(lengths.shape)}")
    if lengths.numel() and (int(lengths.min()) < width or int(lengths.max()) > num_tokens):
        raise ValueError(
            f"lengths must lie in [2*radius+1, num_tokens] = [{width}, {num_tokens}], got "
            f"{lengths.tolist()}"
        )
    start = (torch.arange(num_tokens, device=device) - radius).clamp(min=0)
    start = torch.minimum(start[None, :], (lengths - width)[:, None])
    return start[..., None] + offsets


def _validate(
    query: Tensor, keys: Tensor, values: Tensor, k: int, candidates: Tensor | None,
    mask: Tensor | None, exclude_self: bool,
) -> None:
    for name, x, layout in (("query", query, "B, N, E"), ("keys", keys, "B, M, E"),
                            ("values", values, "B, M, F")):
        check_floating(x, name)
        check_rank(x, name, layout)
    check_k(k)
    (b, n, e), (bk, m, ek), (bv, mv, _) = query.shape, keys.shape, values.shape
    if not (b == bk == bv):
        raise ValueError(
            f"batch sizes differ: query {tuple(query.shape)}, keys {tuple(keys.shape)}, "
            f"values {tuple(values.shape)}"
        )
    if e != ek:
        raise ValueError(
            f"query and keys must share the embedding dim E: query {tuple(query.shape)}, "
            f"keys {tuple(keys.shape)}"
        )
    if m != mv:
        raise ValueError(
            f"keys and values must have the same number of tokens M: keys "
            f"{tuple(keys.shape)}, values {tuple(values.shape)}"
        )
    if n == 0 or m == 0:
        raise ValueError(f"empty set: query has N={n} tokens, keys have M={m}")
    if exclude_self and n != m:
        raise ValueError(
            f"exclude_self needs the query set to be the key set (N == M), got N={n}, M={m}"
        )
    for name, x in (("query", query), ("keys", keys), ("values", values)):
        check_finite(x, name)
    if mask is not None:
        check_mask(mask, "mask", (b, m), "B, M")
    if candidates is None:
        num = m - int(exclude_self)
        if num < k:
            extra = " after exclude_self" if exclude_self else ""
            raise ValueError(f"k={k} is larger than the number of candidates M={num}{extra}")
        if mask is not None:
            valid = mask.expand(b, m).sum(-1, keepdim=True)
            if exclude_self:
                valid = valid - mask.expand(b, m).long()
            check_enough_candidates(valid, k, "mask (and exclude_self)" if exclude_self
                                    else "mask")
        return
    if isinstance(candidates, Tensor) and candidates.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"candidates must be an int64/int32 tensor, got {candidates.dtype}")
    if not isinstance(candidates, Tensor) or candidates.dim() != 3 or \
            candidates.shape[0] not in (1, b) or candidates.shape[1] != n:
        shape = tuple(candidates.shape) if isinstance(candidates, Tensor) else candidates
        raise ValueError(f"candidates must have shape (B or 1, N, O) = ({b} or 1, {n}, O), "
                         f"got {shape}")
    o = candidates.shape[2]
    if o < k:
        raise ValueError(f"k={k} is larger than the number of candidates O={o}")
    if candidates.numel() and (int(candidates.min()) < 0 or int(candidates.max()) >= m):
        raise ValueError(
            f"candidates must index keys in [0, {m}), got values in "
            f"[{int(candidates.min())}, {int(candidates.max())}]"
        )
    if mask is not None or exclude_self:
        valid = _candidate_mask(candidates, mask, exclude_self, 0, b)
        check_enough_candidates(valid.sum(-1), k, "candidates after mask/exclude_self")


def _candidate_mask(
    idx: Tensor, mask: Tensor | None, exclude_self: bool, offset: int, batch: int
) -> Tensor | None:
    """Validity (B, n, O) of candidate indices ``idx`` for queries ``offset … offset + n``."""
    valid = None
    if mask is not None:
        mask = mask.expand(batch, -1)
        valid = torch.gather(mask, 1, idx.expand(batch, -1, -1).flatten(1)).view(
            batch, *idx.shape[1:]
        )
    if exclude_self:
        rows = torch.arange(offset, offset + idx.shape[1], device=idx.device)
        not_self = idx != rows[:, None]
        valid = not_self.expand(batch, -1, -1) if valid is None else valid & not_self
    return valid


def _view(buffer: Tensor, *shape: int) -> Tensor:
    """The start of the 1-D ``buffer`` as a contiguous tensor of ``shape``."""
    return buffer[: math.prod(shape)].view(shape)


def _gather_tokens(x: Tensor, idx: Tensor, buffer: Tensor | None = None) -> Tensor:
    """``x[b, idx[b, n, o]]`` → (B, n, O, D) for x (B, M, D) and idx (B or 1, n, O).

    With ``buffer`` (1-D, large enough), the result is written into its start.
    """
    batch, d = x.shape[0], x.shape[-1]
    flat = idx.expand(batch, -1, -1).flatten(1)
    out = None if buffer is None else _view(buffer, batch, flat.shape[1], d)
    return torch.gather(x, 1, flat[..., None].expand(-1, -1, d), out=out).view(
        batch, *idx.shape[1:], d
    )


def _chunk_global(
    q: Tensor, keys: Tensor, values: Tensor, t: Tensor, *, k: int, offset: int,
    mask: Tensor | None, exclude_self: bool,
) -> Tensor:
    # −‖q − x‖² up to −‖q‖², which is constant per query and cancels in every softmax round.
    scores = torch.baddbmm(
        -keys.square().sum(-1)[:, None, :], q, keys.transpose(1, 2), alpha=2.0
    )
    valid = None
    if mask is not None:
        valid = mask.expand(q.shape[0], -1)[:, None, :]
    if exclude_self:
        cols = torch.arange(keys.shape[1], device=q.device)
        rows = torch.arange(offset, offset + q.shape[1], device=q.device)
        not_self = (rows[:, None] != cols[None, :])[None]
        valid = not_self if valid is None else valid & not_self
    if valid is not None:
        valid = valid.expand_as(scores)
    needs_grad = torch.is_grad_enabled() and any(
        x.requires_grad for x in (scores, values, t))
    if _USE_FUSED and not needs_grad:
        return fused_knn_sums(scores, k, t[..., None], values, valid)
    w = _relax(scores, k, t[..., None], valid)  # (B, n, k, M)
    return torch.matmul(w.flatten(1, 2), values).unflatten(1, (q.shape[1], k))


def _chunk_candidates(
    q: Tensor, keys: Tensor, values: Tensor, t: Tensor, *, k: int, offset: int,
    idx: Tensor, mask: Tensor | None, exclude_self: bool,
) -> Tensor:
    cand_keys = _gather_tokens(keys, idx)  # (B, n, O, E)
    scores = -(q[:, :, None, :] - cand_keys).square().sum(-1)
    valid = _candidate_mask(idx, mask, exclude_self, offset, q.shape[0])
    w = _relax(scores, k, t[..., None], valid)  # (B, n, k, O)
    return torch.einsum("bnko,bnof->bnkf", w, _gather_tokens(values, idx))


def _aggregate_candidates(
    query: Tensor, keys: Tensor, values: Tensor, t: Tensor, idx: Tensor, k: int, step: int,
    mask: Tensor | None, exclude_self: bool,
) -> Tensor:
    """:func:`_chunk_candidates` chunk by chunk, into one result and one reused workspace.

    Without it, per-chunk temporaries and long-lived chunk outputs fragment the heap (or the
    heap is trimmed and grown again each chunk, page-faulting).
    """
    b, n, e = query.shape
    o, f = idx.shape[2], values.shape[2]
    out = query.new_empty(b, n, k, f)
    work = query.new_empty(2, b * min(step, n) * o * max(e, f))
    for start in range(0, n, step):
        stop = min(start + step, n)
        i = idx[:, start:stop]
        diff = torch.sub(query[:, start:stop, None, :], _gather_tokens(keys, i, work[0]),
                         out=_view(work[1], b, stop - start, o, e))
        scores = -diff.square_().sum(-1)
        valid = _candidate_mask(i, mask, exclude_self, start, b)
        w = _relax(scores, k, t[:, start:stop, None], valid)  # (B, n, k, O)
        out[:, start:stop] = torch.einsum("bnko,bnof->bnkf", w, _gather_tokens(values, i, work[0]))
    return out


class _CandidateAggregate(torch.autograd.Function):
    """:func:`_aggregate_candidates` with a backward that recomputes each chunk.

    Like checkpointing :func:`_chunk_candidates` per chunk, except that the candidates'
    gradients are scatter-added into one gradient of the keys and one of the values (autograd
    would make a zero-filled ``(B, M, D)`` tensor per chunk and gathered tensor) and that the
    large temporaries live in one workspace: memory stays the output, the gradients and one
    chunk's working set (peak RSS was ~14× the output in forward + backward).
    """

    @staticmethod
    def forward(
        ctx: Any, query: Tensor, keys: Tensor, values: Tensor, t: Tensor, idx: Tensor,
        k: int, step: int, mask: Tensor | None, exclude_self: bool,
    ) -> Tensor:
        ctx.save_for_backward(query, keys, values, t, idx, mask)
        ctx.k, ctx.step, ctx.exclude_self = k, step, exclude_self
        return _aggregate_candidates(query, keys, values, t, idx, k, step, mask, exclude_self)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        query, keys, values, t, idx, mask = ctx.saved_tensors
        need_q, need_k, need_v, need_t = ctx.needs_input_grad[:4]
        need_w = need_q or need_k or need_t
        b, n, e = query.shape
        o, f, step = idx.shape[2], values.shape[2], ctx.step
        gq = torch.zeros_like(query) if need_q else None
        gk = torch.zeros_like(keys) if need_k else None
        gv = torch.zeros_like(values) if need_v else None
        gt = t.new_zeros(t.shape) if need_t else None
        work = query.new_empty(2, b * min(step, n) * o * max(e, f))
        for start in range(0, n, step):
            stop = min(start + step, n)
            i = idx[:, start:stop]
            flat = i.expand(b, -1, -1).flatten(1)[..., None]
            diff = torch.sub(query[:, start:stop, None, :], _gather_tokens(keys, i, work[0]),
                             out=_view(work[1], b, stop - start, o, e))
            scores = -torch.square(diff, out=_view(work[0], *diff.shape)).sum(-1)
            scores.requires_grad_(need_q or need_k)
            tc = t[:, start:stop, None].detach().requires_grad_(need_t)
            valid = _candidate_mask(i, mask, ctx.exclude_self, start, b)
            with torch.enable_grad():
                w = _relax(scores, ctx.k, tc, valid)
            cand_values = _gather_tokens(values, i, work[0])
            go = grad[:, start:stop]
            gw = torch.matmul(go, cand_values.transpose(-1, -2)) if need_w else None
            if gv is not None:
                gcv = torch.matmul(w.detach().transpose(-1, -2), go,
                                   out=_view(work[0], *cand_values.shape))
                gv.scatter_add_(1, flat.expand(-1, -1, f), gcv.flatten(1, 2))
            if not need_w:
                continue
            grads = torch.autograd.grad(w, [x for x in (scores, tc) if x.requires_grad], gw)
            if gt is not None:
                gt[:, start:stop] = grads[-1][..., 0]
            if need_q or need_k:
                gd = diff.mul_(grads[0][..., None] * -2.0)  # gradient w.r.t. q − key
                if gq is not None:
                    gq[:, start:stop] = gd.sum(2)
                if gk is not None:
                    gk.scatter_add_(1, flat.expand(-1, -1, e), gd.flatten(1, 2).neg_())
        return gq, gk, gv, gt, None, None, None, None, None


def knn_aggregate(
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    k: int,
    temperature: float | Tensor = 1.0,
    *,
    candidates: Tensor | None = None,
    mask: Tensor | None = None,
    exclude_self: bool = False,
    chunk_size: int | None = None,
) -> Tensor:
    r"""Soft k-nearest-neighbour aggregation (the N³ aggregation step).

    For every query token, scores each candidate key by the negative squared Euclidean
    distance of the embeddings, runs :func:`~n3seq.continuous_knn` for ``k`` rounds and
    returns the k weighted averages of the candidates' values.

    Args:
        query: query embeddings.
        keys: key embeddings (same dim E as the queries).
        values: features to aggregate, one per key.
        k: number of neighbours.
        temperature: positive float or tensor broadcastable to ``(B, N)`` (one per query).
        candidates: ``None`` to search all M keys, or a LongTensor ``(B or 1, N, O)`` of key
            indices per query (see :func:`window_candidates` for 1-D windows).
        mask: key padding mask ``(B, M)``, ``True`` = real token.
        exclude_self: never choose a query as its own neighbour (needs query set == key set,
            i.e. token n of the queries is token n of the keys).
        chunk_size: queries per chunk; default keeps a chunk's score matrix near
            :data:`CHUNK_ELEMENTS` elements.

    Returns:
        Aggregated neighbours ``(B, N, k, F)`` in the dtype of ``values``.

    Shape:
        - query: :math:`(B, N, E)`
        - keys: :math:`(B, M, E)`
        - values: :math:`(B, M, F)`
        - output: :math:`(B, N, k, F)`

    Example:
        >>> x = torch.randn(2, 100, 16)
        >>> knn_aggregate(x, x, x, k=4, temperature=0.5, exclude_self=True).shape
        torch.Size([2, 100, 4, 16])
    """
    _validate(query, keys, values, k, candidates, mask, exclude_self)
    b, n, _ = query.shape
    dtype = compute_dtype(query, keys, values)
    t = as_temperature(temperature, torch.Size([b, n]), dtype=dtype, device=query.device)
    t = t.expand(b, n)
    out_dtype = values.dtype
    query, keys, values = query.to(dtype), keys.to(dtype), values.to(dtype)

    if candidates is None:
        per_query = keys.shape[1]
        chunk_fn: Callable[..., Tensor] = _chunk_global
    else:
        candidates = candidates.long()
        per_query = candidates.shape[2] * (1 + (query.shape[2] + values.shape[2]) // 8)
        chunk_fn = _chunk_candidates
    step = chunk_size or max(1, CHUNK_ELEMENTS // (b * per_query))
    needs_grad = torch.is_grad_enabled() and any(
        x.requires_grad for x in (query, keys, values, t)
    )

    if candidates is not None and step < n:
        args = (query, keys, values, t, candidates, k, step, mask, exclude_self)
        with torch.autocast(query.device.type, enabled=False):
            if needs_grad:
                out = _CandidateAggregate.apply(*args)
            else:
                out = _aggregate_candidates(*args)
        return out.to(out_dtype)
    outputs = []
    # Without autograd the chunks are written into one preallocated result: many small
    # long-lived chunk outputs between the large per-chunk temporaries fragment the heap.
    result = None
    if not needs_grad and step < n:
        result = query.new_empty(b, n, k, values.shape[2])
    with torch.autocast(query.device.type, enabled=False):
        for start in range(0, n, step):
            stop = min(start + step, n)
            extra = {"k": k, "offset": start, "mask": mask, "exclude_self": exclude_self}
            if candidates is not None:
                extra["idx"] = candidates[:, start:stop]
            args = (query[:, start:stop], keys, values, t[:, start:stop])
            if needs_grad and step < n:
                out = checkpoint(chunk_fn, *args, use_reentrant=False, **extra)
            else:
                out = chunk_fn(*args, **extra)
            if result is not None:
                result[:, start:stop] = out
                del out
            else:
                outputs.append(out)
    if result is not None:
        out = result
    else:
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
    return out.to(out_dtype)


class KNNAggregate(nn.Module):
    """Module form of :func:`knn_aggregate` with fixed ``k`` and options.

    Args:
        k: number of neighbours.
        exclude_self: never choose a query as its own neighbour.

    Example:
        >>> x = torch.randn(1, 50, 8)
        >>> KNNAggregate(k=3, exclude_self=True)(x, x, x, temperature=1.0).shape
        torch.Size([1, 50, 3, 8])
    """

    def __init__(self, k: int, exclude_self: bool = False) -> None:
        super().__init__()
        check_k(k)
        self.k = k
        self.exclude_self = exclude_self

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, temperature: float | Tensor = 1.0,
        candidates: Tensor | None = None, mask: Tensor | None = None,
    ) -> Tensor:
        return knn_aggregate(query, keys, values, self.k, temperature, candidates=candidates,
                             mask=mask, exclude_self=self.exclude_self)

    def extra_repr(self) -> str:
        return f"k={self.k}, exclude_self={self.exclude_self}"
