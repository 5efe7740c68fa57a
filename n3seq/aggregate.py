"""Soft k-nearest-neighbour aggregation over token sets: ``(B, N, E)`` queries → ``(B, N, k, F)``.

The computation is three stages per chunk of queries: scores and their validity
(:func:`global_scores` or :func:`candidate_scores`, :func:`validity`), the relaxation
(:func:`n3seq.relaxation.relax`), the weighted sums (:func:`weighted_sum`); the stage
functions take checked inputs and do no checks of their own.

Queries are processed in chunks; under autograd each chunk is recomputed in backward
(checkpointed, or by the candidates path's own backward), so the k weight matrices of a chunk
are not stored for every query. Peak memory is then the output, the gradients and one chunk's
working set, whatever N.

Inputs. Every argument is validated at the public entry (types, shapes, counts, candidate
indices, NaN/inf) with one message naming the argument; the chunked hot path adds no checks.
Masked-out keys and values are never inspected: NaN or inf there is ignored and gets a zero
gradient. Large finite features never overflow inside: where the squared distances (or
``scores / t``) would exceed float32, the computation runs in float64 and the result is cast
back; float64 features whose squared distances exceed float64 raise ``OverflowError``. Tiny
temperatures are handled as in :mod:`n3seq.relaxation`. An empty batch (B = 0) or no queries
(N = 0) gives an empty result.

Tracing and transforms: see :mod:`n3seq.relaxation` (``torch.jit.trace`` records no input
checks; ``torch.func`` transforms run an unchunked straightforward path; TorchScript is not
supported).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from n3seq._checks import (
    as_temperature,
    check_bool,
    check_device,
    check_enough_candidates,
    check_finite,
    check_floating,
    check_int,
    check_k,
    check_mask,
    check_optional_int,
    check_rank,
    check_same_device,
    compute_dtype,
    data_checks,
    fetch,
    meta_aware,
    no_autocast,
    raise_non_finite,
    safe_temperature,
    tracing,
)
from n3seq._fused import fused_knn_sums
from n3seq.relaxation import SCRIPT_UNSUPPORTED, RelaxationBackend, choose_relaxation, relax

#: Elements of one chunk's (queries × candidates) score matrix; about 4 MiB in float32, so that
#: a chunk's k rounds run in cache (larger chunks were slower on CPU, not faster).
CHUNK_ELEMENTS = 1 << 20


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
        num_tokens: sequence length N, an int (must be >= 2·radius + 1).
        radius: half width r >= 0, an int.
        lengths: optional integer tensor ``(B,)`` of the true lengths of right-padded
            sequences; windows are then shifted inside ``[0, length)`` so they never reach
            padding (padded queries get the last window of their sequence).
        device: device of the returned tensor.

    Returns:
        LongTensor of shape ``(1, N, 2r + 1)`` (``(B, N, 2r + 1)`` with ``lengths``), usable
        as ``candidates`` of :func:`knn_aggregate`; each row is sorted and contiguous.

    Raises:
        TypeError: if ``num_tokens`` or ``radius`` is not an int (bools and floats such as
            ``10.0`` are refused) or ``lengths`` not an integer tensor.
        ValueError: if ``radius < 0``, the window is longer than ``num_tokens``, or a
            length lies outside ``[2r + 1, num_tokens]``.

    Example:
        >>> window_candidates(5, 1)[0]
        tensor([[0, 1, 2],
                [0, 1, 2],
                [1, 2, 3],
                [2, 3, 4],
                [2, 3, 4]])
    """
    num_tokens = check_int("num_tokens", num_tokens, min=1)
    radius = check_int("radius", radius, min=0)
    device = check_device("device", device)
    width = 2 * radius + 1
    if num_tokens < width:
        raise ValueError(
            f"num_tokens={num_tokens} is smaller than the window 2*radius+1={width} "
            f"(radius={radius})"
        )
    if lengths is None:
        return _window_candidates(num_tokens, radius, None, device)
    if not isinstance(lengths, Tensor):
        raise TypeError(f"lengths must be an integer tensor (B,), got {type(lengths).__name__}")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    if lengths.dim() != 1:
        raise ValueError(f"lengths must have shape (B,), got {tuple(lengths.shape)}")
    lengths = lengths.to(device=device, dtype=torch.long)
    if lengths.numel() and data_checks() and \
            (int(lengths.min()) < width or int(lengths.max()) > num_tokens):
        raise ValueError(
            f"lengths must lie in [2*radius+1, num_tokens] = [{width}, {num_tokens}], got "
            f"{lengths.tolist()}"
        )
    return _window_candidates(num_tokens, radius, lengths, device)


def _window_candidates(
    num_tokens: int, radius: int, lengths: Tensor | None, device: torch.device | str | None
) -> Tensor:
    """:func:`window_candidates` without checks (``lengths``: long, in ``[2r + 1, N]``)."""
    width = 2 * radius + 1
    offsets = torch.arange(width, device=device)
    if lengths is None:
        start = (torch.arange(num_tokens, device=device) - radius).clamp(0, num_tokens - width)
        return (start[:, None] + offsets)[None]
    start = (torch.arange(num_tokens, device=device) - radius).clamp(min=0)
    start = torch.minimum(start[None, :], (lengths - width)[:, None])
    return start[..., None] + offsets


def _validate(
    query: Tensor, keys: Tensor, values: Tensor, k: int, candidates: Tensor | None,
    mask: Tensor | None, exclude_self: bool, chunk_size: int | None = None,
    check_candidates: bool = True,
) -> tuple[int, bool, int | None]:
    """Types, shapes, counts and candidate indices; returns ``k``, ``exclude_self``, chunk size.

    NaN/inf and overflow are checked by :func:`_prepare`, with the values it computes anyway.
    """
    for name, x, layout in (("query", query, "B, N, E"), ("keys", keys, "B, M, E"),
                            ("values", values, "B, M, F")):
        check_floating(x, name)
        check_rank(x, name, layout)
    k = check_k(k)
    exclude_self = check_bool("exclude_self", exclude_self)
    chunk_size = check_optional_int("chunk_size", chunk_size, min=1)
    check_same_device(("query", query), ("keys", keys), ("values", values), ("mask", mask),
                      ("candidates", candidates))
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
    if exclude_self and n != m:
        raise ValueError(
            f"exclude_self needs the query set to be the key set (N == M), got N={n}, M={m}"
        )
    if mask is not None:
        check_mask(mask, "mask", (b, m), "B, M")
    if candidates is not None:
        _check_candidate_layout(candidates, b, n, k)
    if b * n == 0:  # no query: nothing to check further, the result is empty
        return k, exclude_self, chunk_size
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
        return k, exclude_self, chunk_size
    if check_candidates:
        _check_candidate_values(candidates, m)
    if mask is not None or exclude_self:
        valid = validity(candidates, mask, exclude_self, 0, b)
        check_enough_candidates(valid.sum(-1), k, "candidates after mask/exclude_self")
    return k, exclude_self, chunk_size


def _check_candidate_layout(candidates: Tensor, b: int, n: int, k: int) -> None:
    if not isinstance(candidates, Tensor):
        raise TypeError(f"candidates must be an int64/int32 tensor, got "
                        f"{type(candidates).__name__}")
    if candidates.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"candidates must be an int64/int32 tensor, got {candidates.dtype}")
    if candidates.dim() != 3 or candidates.shape[0] not in (1, b) or candidates.shape[1] != n:
        raise ValueError(f"candidates must have shape (B or 1, N, O) = ({b} or 1, {n}, O), "
                         f"got {tuple(candidates.shape)}")
    o = candidates.shape[2]
    if o < k:
        raise ValueError(f"k={k} is larger than the number of candidates O={o}")


def _check_candidate_values(candidates: Tensor, m: int) -> None:
    """Indices in ``[0, M)`` and no key twice in a row (one host sync for sorted rows)."""
    if not data_checks() or candidates.numel() == 0:
        return
    o = candidates.shape[2]
    increasing = (candidates[..., 1:] > candidates[..., :-1]).all() if o > 1 else \
        torch.ones((), dtype=torch.bool, device=candidates.device)
    low, high, sorted_rows = fetch(candidates.min(), candidates.max(), increasing)
    if low < 0 or high >= m:
        raise ValueError(
            f"candidates must index keys in [0, {m}), got values in [{int(low)}, {int(high)}]"
        )
    if sorted_rows:  # strictly increasing rows (e.g. windows) cannot repeat an index
        return
    ordered = candidates.sort(-1).values
    repeated = ordered[..., 1:] == ordered[..., :-1]
    if bool(repeated.any()):
        bi, ni, oi = (int(i) for i in repeated.nonzero()[0])
        raise ValueError(
            f"candidates must not list a key twice for one query: row ({bi}, {ni}) lists key "
            f"{int(ordered[bi, ni, oi])} more than once (a repeated key would count as "
            f"several neighbours)"
        )


# ---------------------------------------------------------------------------------------------
# The three stages of the aggregation, for one chunk of queries: scores + validity → relax →
# weighted sum. Shared by the chunked paths, their backward, the approximate mode, the image
# block's reference path and the benchmarks.


def global_scores(query: Tensor, keys: Tensor, key_norms: Tensor | None = None) -> Tensor:
    """``−‖q − x‖² + ‖q‖²`` of every query against every key, ``(B, n, M)``, by one ``baddbmm``.

    ``‖q‖²`` is constant per query: it changes neither a softmax round nor a top-k, and leaving
    it out saves a pass. No checks.

    Args:
        query: ``(B, n, E)``.
        keys: ``(B, M, E)``.
        key_norms: ``‖x‖²`` of the keys ``(B, M)``, when the caller has them already.
    """
    if key_norms is None:
        key_norms = keys.square().sum(-1)
    return torch.baddbmm(-key_norms[:, None, :], query, keys.transpose(1, 2), alpha=2.0)


def candidate_scores(
    query: Tensor, keys: Tensor, idx: Tensor, work: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``−‖q − x‖²`` of each query's candidates, from their differences (exact; no checks).

    Args:
        query: ``(B, n, E)``.
        keys: ``(B, M, E)``.
        idx: ``(B or 1, n, O)`` key indices.
        work: optional ``(2, ≥ B·n·O·E)`` workspace; the gathered keys, the differences (in
            ``work[1]``) and their squares are then written there instead of new tensors.

    Returns:
        The scores ``(B, n, O)`` and the differences ``q − x`` ``(B, n, O, E)`` (a view of
        ``work[1]`` with ``work``; the backward reuses them).
    """
    if work is None:
        diff = query[:, :, None, :] - _gather_tokens(keys, idx)
        return -diff.square().sum(-1), diff
    b, n, e = query.shape
    diff = torch.sub(query[:, :, None, :], _gather_tokens(keys, idx, work[0]),
                     out=_view(work[1], b, n, idx.shape[2], e))
    return -torch.square(diff, out=_view(work[0], *diff.shape)).sum(-1), diff


def all_keys(num_keys: int, device: torch.device) -> Tensor:
    """The candidates ``(1, 1, M)`` of a global search, for :func:`validity`."""
    return torch.arange(num_keys, device=device)[None, None]


def validity(
    idx: Tensor, mask: Tensor | None, exclude_self: bool, offset: int, batch: int,
    num_queries: int | None = None,
) -> Tensor | None:
    """Which candidates a chunk of queries may choose: key padding and the query itself.

    Args:
        idx: ``(B or 1, n, O)`` candidate key indices of queries ``offset … offset + n − 1``,
            or :func:`all_keys` ``(1, 1, M)`` for every key.
        mask: key padding mask ``(B or 1, M)``, ``True`` = real token, or None.
        exclude_self: whether query ``i`` may not choose key ``i``.
        offset: index of the chunk's first query.
        batch: B.
        num_queries: n, when ``idx`` is :func:`all_keys` (else ``idx.shape[1]``).

    Returns:
        A bool tensor broadcastable to the scores ``(B, n, O)`` (``True`` = valid), or None
        when every candidate is valid.
    """
    valid = None
    if mask is not None:
        mask = mask.expand(batch, -1)
        valid = torch.gather(mask, 1, idx.expand(batch, -1, -1).flatten(1)).view(
            batch, *idx.shape[1:]
        )
    if exclude_self:
        n = idx.shape[1] if num_queries is None else num_queries
        rows = torch.arange(offset, offset + n, device=idx.device)
        not_self = idx != rows[:, None]
        valid = not_self.expand(batch, -1, -1) if valid is None else valid & not_self
    return valid


def weighted_sum(weights: Tensor, values: Tensor, idx: Tensor | None = None,
                 work: Tensor | None = None) -> Tensor:
    """The k weighted sums ``(B, n, k, F)`` of the values of each query's candidates.

    Args:
        weights: ``(B, n, k, O)``.
        values: ``(B, M, F)``.
        idx: ``(B or 1, n, O)`` key indices, or None for all M keys (``O = M``).
        work: optional 1-D buffer (``≥ B·n·O·F``) for the gathered values.
    """
    if idx is None:
        n, k = weights.shape[1:3]
        return torch.matmul(weights.flatten(1, 2), values).unflatten(1, (n, k))
    return torch.einsum("bnko,bnof->bnkf", weights, _gather_tokens(values, idx, work))


def _view(buffer: Tensor, *shape: int) -> Tensor:
    """The start of the 1-D ``buffer`` as a contiguous tensor of ``shape``."""
    return buffer[: math.prod(shape)].view(shape)


def _gather_tokens(x: Tensor, idx: Tensor, buffer: Tensor | None = None) -> Tensor:
    """``x[b, idx[b, n, o]]`` → (B, n, O, D) for x (B, M, D) and idx (B or 1, n, O).

    With ``buffer`` (1-D, large enough), the result is written into its start. Candidates
    shared by the batch (``idx`` ``(1, n, O)``: windows, image patches) are copied as whole
    rows (``index_select``, or indexing under autograd), which on CPU is up to 4× faster than
    ``gather`` with an index expanded over D.
    """
    batch, d = x.shape[0], x.shape[-1]
    if idx.shape[0] == 1:
        if buffer is None:
            return x[:, idx[0]]
        out = _view(buffer, batch, idx[0].numel(), d)
        return torch.index_select(x, 1, idx.flatten(), out=out).view(batch, *idx.shape[1:], d)
    flat = idx.expand(batch, -1, -1).flatten(1)
    out = None if buffer is None else _view(buffer, batch, flat.shape[1], d)
    return torch.gather(x, 1, flat[..., None].expand(-1, -1, d), out=out).view(
        batch, *idx.shape[1:], d
    )


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(x.requires_grad for x in tensors)


def _chunk(
    q: Tensor, keys: Tensor, values: Tensor, t: Tensor, *, k: int, offset: int,
    idx: Tensor | None, mask: Tensor | None, exclude_self: bool, backend: RelaxationBackend,
    work: Tensor | None = None,
) -> Tensor:
    """One chunk of queries ``offset …`` through the three stages; ``t`` is ``(B, n)``.

    ``idx`` None searches every key. ``work`` (no autograd, candidates only) is the workspace
    of :func:`candidate_scores` and :func:`weighted_sum`.
    """
    if idx is None:
        scores = global_scores(q, keys)
        valid = None if mask is None and not exclude_self else validity(
            all_keys(keys.shape[1], q.device), mask, exclude_self, offset, q.shape[0],
            q.shape[1])
    else:
        scores = candidate_scores(q, keys, idx, work)[0]
        valid = validity(idx, mask, exclude_self, offset, q.shape[0])
    if valid is not None:
        valid = valid.expand_as(scores)
    if idx is None and backend == "fused" and not _needs_grad(scores, values, t):
        # Relaxation and weighted sum in one pass: the k weight matrices are never all held.
        return fused_knn_sums(scores, k, t[..., None], values, valid)
    weights = relax(scores, k, t[..., None], valid, backend)  # (B, n, k, O)
    return weighted_sum(weights, values, idx, None if work is None else work[0])


def _workspace(query: Tensor, values: Tensor, idx: Tensor, step: int) -> Tensor:
    """The two buffers of :func:`candidate_scores` / :func:`weighted_sum` for a chunk."""
    b, n, e = query.shape
    return query.new_empty(2, b * min(step, n) * idx.shape[2] * max(e, values.shape[2]))


def _chunks(
    query: Tensor, keys: Tensor, values: Tensor, t: Tensor, k: int, idx: Tensor | None,
    mask: Tensor | None, exclude_self: bool, step: int, backend: RelaxationBackend,
    needs_grad: bool,
) -> Tensor:
    """The chunk loop: :func:`_chunk` over queries ``0 … N − 1`` in chunks of ``step``.

    Under autograd each chunk is checkpointed (recomputed in backward). Without it the chunks
    are written into one preallocated result, and the candidates path reuses one workspace:
    many small long-lived outputs between the large per-chunk temporaries fragment the heap
    (or it is trimmed and grown again each chunk, page-faulting).
    """
    b, n, _ = query.shape
    # The straightforward backend writes no buffers in place (torch.func transforms refuse it).
    work = None if idx is None or needs_grad or backend != "fused" else \
        _workspace(query, values, idx, step)
    options = {"k": k, "mask": mask, "exclude_self": exclude_self, "backend": backend}
    if step >= n:  # sliced as the chunks are: the same autograd graph, the same sums
        return _chunk(query[:, 0:n], keys, values, t[:, 0:n], offset=0, idx=idx, work=work,
                      **options)
    out = None if needs_grad else query.new_empty(b, n, k, values.shape[2])
    outputs = []
    for start in range(0, n, step):
        stop = min(start + step, n)
        args = (query[:, start:stop], keys, values, t[:, start:stop])
        options["idx"] = None if idx is None else idx[:, start:stop]
        if out is None:
            outputs.append(checkpoint(_chunk, *args, use_reentrant=False, offset=start,
                                      **options))
        else:
            out[:, start:stop] = _chunk(*args, offset=start, work=work, **options)
    return torch.cat(outputs, dim=1) if out is None else out


class _CandidateAggregate(torch.autograd.Function):
    """:func:`_chunks` over candidates (fused relaxation) with a backward that recomputes each
    chunk.

    Like checkpointing :func:`_chunk` per chunk, except that the candidates' gradients are
    scatter-added into one gradient of the keys and one of the values (autograd would make a
    zero-filled ``(B, M, D)`` tensor per chunk and gathered tensor) and that the large
    temporaries live in one workspace: memory stays the output, the gradients and one chunk's
    working set (peak RSS was ~14× the output in forward + backward).
    """

    @staticmethod
    def forward(
        ctx: Any, query: Tensor, keys: Tensor, values: Tensor, t: Tensor, idx: Tensor,
        k: int, step: int, mask: Tensor | None, exclude_self: bool,
    ) -> Tensor:
        ctx.save_for_backward(query, keys, values, t, idx, mask)
        ctx.k, ctx.step, ctx.exclude_self = k, step, exclude_self
        return _chunks(query, keys, values, t, k, idx, mask, exclude_self, step, "fused",
                       needs_grad=False)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        query, keys, values, t, idx, mask = ctx.saved_tensors
        need_q, need_k, need_v, need_t = ctx.needs_input_grad[:4]
        need_w = need_q or need_k or need_t
        b, n, e = query.shape
        f, step = values.shape[2], ctx.step
        gq = torch.zeros_like(query) if need_q else None
        gk = torch.zeros_like(keys) if need_k else None
        gv = torch.zeros_like(values) if need_v else None
        gt = t.new_zeros(t.shape) if need_t else None
        work = _workspace(query, values, idx, step)
        for start in range(0, n, step):
            stop = min(start + step, n)
            i = idx[:, start:stop]
            flat = i.expand(b, -1, -1).flatten(1)[..., None]
            scores, diff = candidate_scores(query[:, start:stop], keys, i, work)
            scores.requires_grad_(need_q or need_k)
            tc = t[:, start:stop, None].detach().requires_grad_(need_t)
            valid = validity(i, mask, ctx.exclude_self, start, b)
            with torch.enable_grad():
                w = relax(scores, ctx.k, tc, valid, "fused")
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


@meta_aware
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
    backend: RelaxationBackend = "fused",
) -> Tensor:
    r"""Soft k-nearest-neighbour aggregation (the N³ aggregation step).

    For every query token, scores each candidate key by the negative squared Euclidean
    distance of the embeddings, runs :func:`~n3seq.continuous_knn` for ``k`` rounds and
    returns the k weighted averages of the candidates' values.

    Args:
        query: query embeddings.
        keys: key embeddings (same dim E as the queries).
        values: features to aggregate, one per key.
        k: number of neighbours, an int >= 1.
        temperature: positive float or tensor broadcastable to ``(B, N)`` (one per query);
            any positive finite value works (tiny ones give the hard kNN limit).
        candidates: ``None`` to search all M keys, or a LongTensor ``(B or 1, N, O)`` of key
            indices per query (see :func:`window_candidates` for 1-D windows); a row must
            not list a key twice (refused: it would count as several neighbours).
        mask: key padding mask ``(B, M)``, ``True`` = real token. Masked keys and values are
            never inspected or chosen (their content, NaN included, does not matter); the
            queries are always checked.
        exclude_self: never choose a query as its own neighbour (needs query set == key set,
            i.e. token n of the queries is token n of the keys); a bool.
        chunk_size: queries per chunk, an int >= 1; default keeps a chunk's score matrix
            near :data:`CHUNK_ELEMENTS` elements.
        backend: ``"fused"`` (default: chunked queries, the fused relaxation of
            :mod:`n3seq._fused`, memory of one chunk) or ``"straightforward"`` (all queries at
            once with the readable relaxation and plain autograd; ``chunk_size`` is ignored);
            both compute the same function. Where the fused one cannot run
            (:func:`~n3seq.relaxation.can_run_fused`) the straightforward one runs.

    Returns:
        Aggregated neighbours ``(B, N, k, F)`` in the dtype of ``values`` (empty when B or N
        is 0).

    Raises:
        TypeError: for a non-tensor or non-floating input, a non-int ``k``/``chunk_size``,
            a non-bool ``exclude_self`` or ``mask``, or non-integer ``candidates``.
        ValueError: for an unknown ``backend``, mismatched shapes, ``k`` above the (valid)
            candidates of a query, candidate indices out of range or repeated, a NaN/inf in
            the queries or in valid keys/values (naming the argument and the first bad
            index), or a temperature that is not positive and finite.
        OverflowError: if float64 features are so large that their squared distances
            overflow float64.

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
    k, exclude_self, chunk_size = _validate(query, keys, values, k, candidates, mask,
                                            exclude_self, chunk_size)
    return _knn_aggregate(query, keys, values, k, temperature, candidates, mask, exclude_self,
                          chunk_size, backend=backend)


#: Names of query, keys, values and temperature in messages.
_NAMES = ("query", "keys", "values", "temperature")


def _prepare(
    query: Tensor, keys: Tensor, values: Tensor, k: int, temperature: float | Tensor,
    mask: Tensor | None, names: tuple[str, str, str, str] = _NAMES,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inputs in the compute dtype, masked keys/values zeroed, and a safe temperature (B, N).

    One host sync checks the queries and the valid keys/values for NaN/inf and reads their
    largest magnitudes and the smallest temperature. From these a bound of every score
    (``E·(max|q| + max|k|)²`` per query) decides whether float32 suffices: the scores, the
    logits ``scores / t`` (with :func:`~n3seq._checks.safe_temperature`'s floor) and the
    weighted sums of the values must stay finite; otherwise the computation runs in float64,
    and where even float64 does not suffice ``OverflowError`` is raised.
    """
    b, n, e = query.shape
    m = keys.shape[1]
    key_ok = None if mask is None else mask.expand(b, m)[..., None]
    dtype = compute_dtype(query, keys, values)
    checks = data_checks()
    if not checks and tracing():
        check_finite(query, names[0])
        check_finite(keys, names[1], key_ok)
        check_finite(values, names[2], key_ok)
    while True:
        info = torch.finfo(dtype)
        q, kk, v = query.to(dtype), keys.to(dtype), values.to(dtype)
        t = as_temperature(temperature, torch.Size([b, n]), names[3], dtype=dtype,
                           device=query.device).expand(b, n)
        zero = q.new_zeros(())
        q_max = q.abs().amax(-1) if e else q.new_zeros(b, n)  # (B, N)
        k_abs, v_abs = kk.abs(), v.abs()
        if key_ok is not None:
            k_all = k_abs.amax() if kk.numel() else zero  # padding included
            v_all = v_abs.amax() if v.numel() else zero
            k_abs, v_abs = k_abs.masked_fill(~key_ok, 0.0), v_abs.masked_fill(~key_ok, 0.0)
        k_max = k_abs.amax((1, 2)) if m * e else q.new_zeros(b)  # (B,), valid keys only
        v_max = v_abs.amax() if v.numel() else zero
        largest = smallest = None
        sanitize = key_ok is not None
        if checks:
            qm, km, vm, smallest, *padding = fetch(
                q_max.max(), k_max.max(), v_max, t.min(),
                *((k_all, v_all) if key_ok is not None else ()))
            for value, x, name, where in ((qm, query, names[0], None),
                                          (km, keys, names[1], key_ok),
                                          (vm, values, names[2], key_ok)):
                if not math.isfinite(value):
                    raise_non_finite(x, name, where, "valid keys" if where is not None else None)
            # Finite padding is harmless (excluded, zero gradient); NaN/inf padding is zeroed
            # so that no 0 · inf reaches a gradient.
            sanitize = key_ok is not None and not all(math.isfinite(p) for p in padding)
            largest = e * (qm + km) * (qm + km)  # host float: inf rather than an error
            fits = largest <= info.max / 4 and vm <= info.max / 4
        else:
            fits = True
        if sanitize:
            kk = kk.masked_fill(~key_ok, 0.0)
            v = v.masked_fill(~key_ok, 0.0)
        if fits:
            bound = e * (q_max + k_max[:, None]).square()
            safe = safe_temperature(t, bound, k, dtype, largest, smallest)
            if safe is not None:
                return q, kk, v, safe
        if dtype == torch.float64:
            raise OverflowError(
                f"knn_aggregate overflows float64: |query| reaches {qm:.3g}, |keys| {km:.3g}, "
                f"|values| {vm:.3g} (E={e}) at temperature {smallest:.3g}; their squared "
                f"distances (or scores / temperature) exceed float64. Scale the features down"
            )
        dtype = torch.float64


def _empty_result(
    query: Tensor, keys: Tensor, values: Tensor, k: int, temperature: float | Tensor
) -> Tensor:
    """The ``(B, N, k, F)`` result when there is no query, connected to the inputs' graph."""
    b, n, _ = query.shape
    as_temperature(temperature, torch.Size([b, n]))
    out = values.new_zeros(b, n, k, values.shape[2])
    if torch.is_grad_enabled():
        out = out + sum(x.sum() * 0 for x in (query, keys, values)).to(values.dtype)
        if isinstance(temperature, Tensor):
            out = out + (temperature.sum() * 0).to(values.dtype)
    return out


def _knn_aggregate(
    query: Tensor, keys: Tensor, values: Tensor, k: int, temperature: float | Tensor,
    candidates: Tensor | None, mask: Tensor | None, exclude_self: bool,
    chunk_size: int | None, names: tuple[str, str, str, str] = _NAMES,
    backend: str = "fused",
) -> Tensor:
    """:func:`knn_aggregate` after :func:`_validate` (internal callers with checked arguments).

    ``names`` name query, keys, values and temperature in messages.
    """
    backend = choose_relaxation(backend)
    b, n, _ = query.shape
    if b * n == 0:
        return _empty_result(query, keys, values, k, temperature)
    out_dtype = values.dtype
    query, keys, values, t = _prepare(query, keys, values, k, temperature, mask, names)
    return _compute(query, keys, values, t, k, candidates, mask, exclude_self, chunk_size,
                    backend).to(out_dtype)


def _compute(
    query: Tensor, keys: Tensor, values: Tensor, t: Tensor, k: int,
    candidates: Tensor | None, mask: Tensor | None, exclude_self: bool,
    chunk_size: int | None, backend: RelaxationBackend,
) -> Tensor:
    """The aggregation of :func:`_prepare`'d inputs, in their dtype, by a chosen ``backend``.

    ``"fused"`` runs in chunks of queries (about :data:`CHUNK_ELEMENTS` scores each), with
    the candidates' own backward under autograd; ``"straightforward"`` (the ``torch.func``
    path: no custom backward, no checkpointing, no in-place updates) takes all queries at
    once, holding the full ``(B, N, k, O)`` weights.
    """
    b, n, _ = query.shape
    if candidates is not None:
        candidates = candidates.long()
    if backend == "straightforward":
        step = n
    else:
        per_query = keys.shape[1] if candidates is None else \
            candidates.shape[2] * (1 + (query.shape[2] + values.shape[2]) // 8)
        step = chunk_size or max(1, CHUNK_ELEMENTS // max(1, b * per_query))
    needs_grad = _needs_grad(query, keys, values, t)
    with no_autocast(query.device):
        if candidates is not None and needs_grad and step < n:
            return _CandidateAggregate.apply(query, keys, values, t, candidates, k, step, mask,
                                             exclude_self)
        return _chunks(query, keys, values, t, k, candidates, mask, exclude_self, step,
                       backend, needs_grad)


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
        self.k = check_k(k)
        self.exclude_self = check_bool("exclude_self", exclude_self)

    def __prepare_scriptable__(self) -> nn.Module:
        raise RuntimeError(SCRIPT_UNSUPPORTED.format(type(self).__name__))

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, temperature: float | Tensor = 1.0,
        candidates: Tensor | None = None, mask: Tensor | None = None,
    ) -> Tensor:
        return knn_aggregate(query, keys, values, self.k, temperature, candidates=candidates,
                             mask=mask, exclude_self=self.exclude_self)

    def extra_repr(self) -> str:
        return f"k={self.k}, exclude_self={self.exclude_self}"
