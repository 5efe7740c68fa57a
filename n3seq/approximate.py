r"""Approximate soft kNN aggregation for very large global sets.

The exact relaxation scores every query against all M keys in each of its k rounds. Far
candidates get exponentially small weights, so for large M it pays to pre-select, per query,
the ``L`` candidates with the best scores by an exact hard search (chunked matmul + top-k, or a
FAISS flat index) and run the relaxation over those only, via
``knn_aggregate(..., candidates=...)``.

Error. Let C be the L pre-selected candidates of a query, ``s`` its scores, ``t`` its
temperature and ``s₍L₎`` the L-th best score. With ``cₘ = Σ_{l<j} wˡₘ`` (each ``cₘ ∈ [0, 1]``,
``Σₘ cₘ ≤ j − 1``), the round-j logits of the exact relaxation satisfy
``aʲᵢ ≤ sᵢ`` and ``exp(aʲₘ / t) ≥ exp(sₘ / t)·(1 − cₘ)^{1/t}``, so the weight it puts
beyond the L-th candidate in round j is at most

    tailʲ = Σ_{i ∉ C} exp((sᵢ − s₍L₎) / t) / (L · (1 − (j − 1)/L)^{max(1, 1/t)})

(the minimum of ``Σₘ (1 − cₘ)^{1/t}`` under those constraints is reached by spreading the
consumed weight evenly when ``1/t ≥ 1`` and by concentrating it when ``1/t < 1``). It is a
softmax tail: tiny once the scores beyond the L-th candidate are a few temperatures below it.
:func:`tail_bound` computes it per query and round.

Inputs are validated as by :func:`~n3seq.knn_aggregate` (ints, bools, NaN/inf at valid keys,
masked keys never inspected, features whose squared distances would overflow float32 are
searched in float64; float64 overflow raises ``OverflowError``). An empty batch gives an
empty result. Inside ``torch.func`` transforms (``vmap``, ``grad``, ...) the search runs as
usual (a hard top-k, no gradient) and the relaxation over its candidates takes the
straightforward path, as :func:`~n3seq.knn_aggregate` does; ``torch.jit.trace`` records no
input checks.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
from torch import Tensor

from n3seq._checks import (
    as_temperature,
    check_bool,
    check_choice,
    check_finite,
    check_floating,
    check_int,
    check_k,
    check_mask,
    check_optional_int,
    check_rank,
    data_checks,
    fetch,
    meta_aware,
    raise_non_finite,
    tracing,
)
from n3seq.aggregate import (
    _compute,
    _empty_result,
    _prepare,
    _validate,
    all_keys,
    global_scores,
    validity,
)
from n3seq.relaxation import choose_relaxation, relax

Search = Literal["torch", "faiss"]
#: The exact hard searches of the pre-selection (the ``search`` argument).
SEARCHES = ("torch", "faiss")
#: The former name of :data:`Search`.
Backend = Search

#: Scores per chunk of the hard search (16 MiB in float32). Larger than the exact path's chunks:
#: a top-k needs no per-round passes to keep in cache, and the (queries × E) @ (E × M) product
#: runs about 2× faster with 128 than with 32 query rows at M = 32k.
SEARCH_ELEMENTS = 1 << 22


def _search(search: object, backend: object, who: str) -> Search:
    """The ``search`` argument, checked; ``backend`` is its deprecated name."""
    if backend is not None:
        warnings.warn(
            f"{who}(backend=...) is deprecated: use search={backend!r} (the exact search of "
            f"the pre-selection, 'torch' or 'faiss'); backend now names the implementation of "
            f"a function, as in knn_aggregate(backend='fused')",
            DeprecationWarning, stacklevel=3)
        if search != "torch" and search != backend:
            raise ValueError(f"{who}: search={search!r} and its deprecated name "
                             f"backend={backend!r} disagree; pass search only")
        search = backend
    return check_choice("search", search, SEARCHES)


def _check_inputs(
    query: Tensor, keys: Tensor, num_candidates: int, mask: Tensor | None, exclude_self: bool,
    chunk_size: int | None = None,
) -> tuple[int, bool, int | None]:
    """Types, shapes and counts; returns ``num_candidates``, ``exclude_self``, ``chunk_size``."""
    for name, x, layout in (("query", query, "B, N, E"), ("keys", keys, "B, M, E")):
        check_floating(x, name)
        check_rank(x, name, layout)
    (b, n, e), (bk, m, ek) = query.shape, keys.shape
    if b != bk or e != ek:
        raise ValueError(
            f"query (B, N, E) and keys (B, M, E) must share B and E, got query "
            f"{tuple(query.shape)}, keys {tuple(keys.shape)}"
        )
    num_candidates = check_int("num_candidates", num_candidates, min=1)
    exclude_self = check_bool("exclude_self", exclude_self)
    chunk_size = check_optional_int("chunk_size", chunk_size, min=1)
    if exclude_self and n != m:
        raise ValueError(f"exclude_self needs N == M, got N={n}, M={m}")
    if mask is not None:
        check_mask(mask, "mask", (b, m), "B, M")
    if b * n == 0:
        return num_candidates, exclude_self, chunk_size
    valid = torch.full((b,), m, dtype=torch.long, device=keys.device)
    if mask is not None:
        valid = mask.expand(b, m).sum(-1)
    if exclude_self:
        valid = valid - 1
    if data_checks():
        low = int(valid.min())
        if num_candidates > low:
            raise ValueError(
                f"num_candidates={num_candidates} is larger than the number of valid candidates "
                f"({low}, after mask/exclude_self; keys {tuple(keys.shape)})"
            )
    return num_candidates, exclude_self, chunk_size


def _prepare_search(
    query: Tensor, keys: Tensor, mask: Tensor | None, float32_only: bool = False
) -> tuple[Tensor, Tensor]:
    """Query and keys in the search dtype, checked for NaN/inf (valid keys only), one sync.

    Masked keys are zeroed where they are not finite. Where the squared distances could
    exceed float32, the search runs in float64 (``OverflowError`` beyond float64, or beyond
    float32 with ``float32_only``, i.e. FAISS).
    """
    b, _, e = query.shape
    m = keys.shape[1]
    key_ok = None if mask is None else mask.expand(b, m)[..., None]
    dtype = torch.float64 if torch.float64 in (query.dtype, keys.dtype) else torch.float32
    q, kk = query.to(dtype), keys.to(dtype)
    if not data_checks():
        if tracing():
            check_finite(query, "query")
            check_finite(keys, "keys", key_ok)
        if key_ok is not None:
            kk = kk.masked_fill(~key_ok, 0.0)
        return q, kk
    zero = q.new_zeros(())
    k_abs = kk.abs()
    scalars = [q.abs().amax() if q.numel() else zero, k_abs.amax() if kk.numel() else zero]
    if key_ok is not None:
        scalars.append(k_abs.masked_fill(~key_ok, 0.0).amax() if kk.numel() else zero)
    qm, k_all, *rest = fetch(*scalars)
    km = rest[0] if rest else k_all
    if not math.isfinite(qm):
        raise_non_finite(query, "query")
    if not math.isfinite(km):
        raise_non_finite(keys, "keys", key_ok, "valid keys" if key_ok is not None else None)
    if key_ok is not None and not math.isfinite(k_all):
        kk = kk.masked_fill(~key_ok, 0.0)
    largest = e * (qm + km) * (qm + km)
    if largest > torch.finfo(dtype).max / 4:
        if dtype == torch.float64 or float32_only:
            where = "float64" if dtype == torch.float64 else "float32 (the FAISS search)"
            raise OverflowError(
                f"the squared distances of query (|values| up to {qm:.3g}) and keys (up to "
                f"{km:.3g}, E={e}) overflow {where}; scale the features down"
                + ("" if dtype == torch.float64 else " or use search='torch'")
            )
        q, kk = q.double(), kk.double()
    return q, kk


def _chunk_scores(
    q: Tensor, keys: Tensor, key_norms: Tensor, offset: int, mask: Tensor | None,
    exclude_self: bool,
) -> Tensor:
    """−‖q − x‖² + ‖q‖² for a chunk of queries; invalid candidates get −inf."""
    scores = global_scores(q, keys, key_norms)
    if mask is not None or exclude_self:
        valid = validity(all_keys(keys.shape[1], q.device), mask, exclude_self, offset,
                         q.shape[0], q.shape[1])
        scores.masked_fill_(~valid, float("-inf"))
    return scores


def _preselect_torch(
    query: Tensor, keys: Tensor, num: int, mask: Tensor | None, exclude_self: bool,
    chunk_size: int | None,
) -> Tensor:
    b, n, _ = query.shape
    step = chunk_size or max(1, SEARCH_ELEMENTS // (b * keys.shape[1]))
    norms = keys.square().sum(-1)
    out = []
    for start in range(0, n, step):
        scores = _chunk_scores(query[:, start:start + step], keys, norms, start, mask,
                               exclude_self)
        out.append(scores.topk(num, dim=-1, sorted=True).indices)
    return torch.cat(out, dim=1)


def _preselect_faiss(
    query: Tensor, keys: Tensor, num: int, mask: Tensor | None, exclude_self: bool
) -> Tensor:
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "search='faiss' needs the optional dependency faiss: pip install 'n3seq[faiss]'"
        ) from err
    b, n, e = query.shape
    extra = int(exclude_self)
    rows = []
    for i in range(b):
        kept = torch.arange(keys.shape[1], device=keys.device)
        if mask is not None:
            kept = kept[mask.expand(b, -1)[i]]
        index = faiss.IndexFlatL2(e)
        if query.is_cuda and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
            options = faiss.GpuMultipleClonerOptions()
            options.shard = True  # one shard of the keys per GPU
            index = faiss.index_cpu_to_all_gpus(index, co=options)
        index.add(keys[i, kept].detach().float().cpu().contiguous().numpy())
        _, found = index.search(query[i].detach().float().cpu().contiguous().numpy(),
                                num + extra)
        idx = kept.cpu()[torch.from_numpy(found).long()]  # (N, num + extra) key indices
        if exclude_self:
            is_self = ~validity(idx[None], None, True, 0, 1)[0]
            # Drop the query itself where found, else the last (worst) hit.
            drop = torch.where(is_self.any(1), is_self.int().argmax(1), torch.tensor(num))
            keep = torch.ones_like(idx, dtype=torch.bool)
            keep[torch.arange(n), drop] = False
            idx = idx[keep].view(n, num)
        rows.append(idx)
    return torch.stack(rows).to(query.device)


@meta_aware
@torch.no_grad()
def preselect_candidates(
    query: Tensor,
    keys: Tensor,
    num_candidates: int,
    mask: Tensor | None = None,
    exclude_self: bool = False,
    search: Search = "torch",
    chunk_size: int | None = None,
    *,
    backend: Search | None = None,
) -> Tensor:
    """Indices of the ``num_candidates`` nearest keys of every query (exact hard search).

    Args:
        query: query embeddings.
        keys: key embeddings.
        num_candidates: L, candidates kept per query.
        mask: key padding mask ``(B, M)``, ``True`` = real token; masked keys are never chosen.
        exclude_self: never choose a query's own index (needs N == M).
        search: ``"torch"`` (chunked matmul + top-k on the inputs' device) or ``"faiss"``
            (an exact ``IndexFlatL2`` per batch element, sharded over all GPUs when the
            inputs are on CUDA and FAISS sees GPUs; needs the ``faiss`` extra).
        chunk_size: queries per chunk of the torch search.
        backend: deprecated name of ``search`` (a ``DeprecationWarning``; in n3seq
            ``backend`` names the implementation of one function).

    Returns:
        LongTensor ``(B, N, L)`` of key indices, nearest first, usable as ``candidates`` of
        :func:`~n3seq.knn_aggregate` (empty for B = 0 or N = 0).

    Raises:
        TypeError: for non-floating inputs, a non-int ``num_candidates``/``chunk_size`` or a
            non-bool ``exclude_self``.
        ValueError: for mismatched shapes, ``num_candidates`` outside ``[1, valid keys]``,
            an unknown ``search``, or NaN/inf in the queries or valid keys.
        OverflowError: where the squared distances overflow float64 (float32 for FAISS).

    Shape:
        - query: :math:`(B, N, E)`
        - keys: :math:`(B, M, E)`
        - output: :math:`(B, N, L)`

    Example:
        >>> x = torch.randn(1, 1000, 8)
        >>> preselect_candidates(x, x, 32, exclude_self=True).shape
        torch.Size([1, 1000, 32])
    """
    search = _search(search, backend, "preselect_candidates")
    num_candidates, exclude_self, chunk_size = _check_inputs(
        query, keys, num_candidates, mask, exclude_self, chunk_size)
    b, n, _ = query.shape
    if b * n == 0:
        return torch.zeros(b, n, num_candidates, dtype=torch.long, device=query.device)
    q, kk = _prepare_search(query, keys, mask, float32_only=search == "faiss")
    if search == "torch":
        return _preselect_torch(q, kk, num_candidates, mask, exclude_self, chunk_size)
    return _preselect_faiss(q, kk, num_candidates, mask, exclude_self)


@meta_aware
def approx_knn_aggregate(
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    k: int,
    temperature: float | Tensor = 1.0,
    *,
    num_candidates: int = 64,
    mask: Tensor | None = None,
    exclude_self: bool = False,
    search: Search = "torch",
    chunk_size: int | None = None,
    backend: Search | None = None,
) -> Tensor:
    """:func:`~n3seq.knn_aggregate` over the ``num_candidates`` nearest keys of each query.

    The pre-selection is a hard search without gradient; the relaxation over the selected
    candidates is exact and differentiable in ``query``, ``keys``, ``values`` and
    ``temperature``. See the module docstring and :func:`tail_bound` for the error.

    Args:
        query: query embeddings.
        keys: key embeddings.
        values: features to aggregate, one per key.
        k: number of neighbours (``k <= num_candidates``).
        temperature: positive float or tensor broadcastable to ``(B, N)``.
        num_candidates: L, candidates pre-selected per query.
        mask: key padding mask ``(B, M)``, ``True`` = real token.
        exclude_self: never choose a query as its own neighbour.
        search: ``"torch"`` or ``"faiss"`` (see :func:`preselect_candidates`).
        chunk_size: queries per chunk of the pre-selection.
        backend: deprecated name of ``search``.

    Returns:
        ``(B, N, k, F)`` aggregated neighbours (empty for B = 0 or N = 0).

    Raises:
        The errors of :func:`preselect_candidates` and :func:`~n3seq.knn_aggregate`, and
        ``ValueError`` if ``k > num_candidates``.

    Shape:
        - query: :math:`(B, N, E)`
        - keys: :math:`(B, M, E)`
        - values: :math:`(B, M, F)`
        - output: :math:`(B, N, k, F)`

    Example:
        >>> x = torch.randn(1, 1000, 8)
        >>> approx_knn_aggregate(x, x, x, k=4, num_candidates=32, exclude_self=True).shape
        torch.Size([1, 1000, 4, 8])
    """
    k = check_k(k)
    search = _search(search, backend, "approx_knn_aggregate")
    num_candidates, exclude_self, chunk_size = _check_inputs(
        query, keys, num_candidates, mask, exclude_self, chunk_size)
    if k > num_candidates:
        raise ValueError(f"k={k} must be <= num_candidates={num_candidates}")
    k, exclude_self, _ = _validate(query, keys, values, k, None, mask, exclude_self)
    b, n, _ = query.shape
    if b * n == 0:
        return _empty_result(query, keys, values, k, temperature)
    needs_grad = torch.is_grad_enabled() and (
        any(x.requires_grad for x in (query, keys, values))
        or (isinstance(temperature, Tensor) and temperature.requires_grad)
    )
    q, kk, v, t = _prepare(query, keys, values, k, temperature, mask)
    relaxation = choose_relaxation()
    if search == "torch" and not needs_grad and relaxation == "fused":
        return _approx_inference(q, kk, v, t, k, num_candidates, mask, exclude_self,
                                 chunk_size).to(values.dtype)
    with torch.no_grad():
        if search == "torch":
            candidates = _preselect_torch(q, kk, num_candidates, mask, exclude_self, chunk_size)
        else:
            q32, k32 = _prepare_search(query, keys, mask, float32_only=True)
            candidates = _preselect_faiss(q32, k32, num_candidates, mask, exclude_self)
    # The pre-selection enforced mask and exclude_self: distinct, valid candidates only.
    return _compute(q, kk, v, t, k, candidates, None, False, None, relaxation).to(values.dtype)


@torch.no_grad()
def _approx_inference(
    query: Tensor, keys: Tensor, vals: Tensor, t: Tensor, k: int, num: int,
    mask: Tensor | None, exclude_self: bool, chunk_size: int | None,
) -> Tensor:
    """Without autograd the top-k scores of the search are the relaxation's scores: reuse them.

    They differ from ``−‖q − x‖²`` by ``‖q‖²``, a per-query constant that every softmax round
    ignores. Saves recomputing the distances and gathering the candidate keys. Inputs come
    from :func:`~n3seq.aggregate._prepare` (compute dtype, safe temperature ``(B, N)``).
    """
    b, n, _ = query.shape
    step = chunk_size or max(1, SEARCH_ELEMENTS // (b * keys.shape[1]))
    norms = keys.square().sum(-1)
    flat_vals = vals.reshape(-1, vals.shape[-1])
    offsets = torch.arange(b, device=vals.device)[:, None, None] * keys.shape[1]
    out = []
    for start in range(0, n, step):
        top = _chunk_scores(query[:, start:start + step], keys, norms, start, mask,
                            exclude_self).topk(num, dim=-1)
        w = relax(top.values, k, t[:, start:start + step, None], None, "fused")
        # Rows of the flattened (B·M, F) values: a row copy per index, much faster on CPU
        # than gather with an index expanded over F.
        rows = (top.indices + offsets).flatten()
        near = flat_vals.index_select(0, rows).view(b, -1, num, vals.shape[-1])
        out.append(torch.einsum("bnkl,bnlf->bnkf", w, near))
    return torch.cat(out, dim=1)


@meta_aware
@torch.no_grad()
def tail_bound(
    query: Tensor,
    keys: Tensor,
    num_candidates: int,
    k: int,
    temperature: float | Tensor = 1.0,
    *,
    mask: Tensor | None = None,
    exclude_self: bool = False,
    chunk_size: int | None = None,
) -> Tensor:
    """Upper bound of the weight the exact relaxation puts beyond the L-th best candidate.

    ``bound[b, n, j]`` bounds ``Σ_{i ∉ C} wʲᵢ`` of :func:`~n3seq.continuous_knn` on query n's
    scores over all keys, C being its ``num_candidates`` best keys (see the module docstring
    for the derivation). Use it to choose ``num_candidates`` for :func:`approx_knn_aggregate`.

    Args:
        query: query embeddings.
        keys: key embeddings.
        num_candidates: L (``>= k``).
        k: number of rounds.
        temperature: positive float or tensor broadcastable to ``(B, N)``.
        mask: key padding mask ``(B, M)``.
        exclude_self: leave each query's own index out, as the aggregation would.
        chunk_size: queries per chunk.

    Returns:
        ``(B, N, k)`` bounds in [0, 1], finite for every accepted temperature (where
        ``(1 − (j − 1)/L)^{1/t}`` underflows they are computed in log space).

    Raises:
        The errors of :func:`preselect_candidates`, and for ``k`` those of
        :func:`~n3seq.continuous_knn` plus ``ValueError`` if ``k > num_candidates``.

    Example:
        >>> x = torch.randn(1, 200, 4)
        >>> tail_bound(x, x, 32, k=3, temperature=0.1).shape
        torch.Size([1, 200, 3])
    """
    num_candidates, exclude_self, chunk_size = _check_inputs(
        query, keys, num_candidates, mask, exclude_self, chunk_size)
    k = check_k(k)
    if k > num_candidates:
        raise ValueError(f"k={k} must be <= num_candidates={num_candidates}")
    b, n, _ = query.shape
    query, keys = _prepare_search(query, keys, mask)
    dtype = query.dtype
    t = as_temperature(temperature, torch.Size([b, n]), dtype=dtype,
                       device=query.device).expand(b, n)
    if b * n == 0:
        return query.new_zeros(b, n, k)
    step = chunk_size or max(1, SEARCH_ELEMENTS // (b * keys.shape[1]))
    norms = keys.square().sum(-1)
    num = num_candidates
    rounds = torch.arange(k, dtype=dtype, device=query.device)
    log1m = torch.log1p(-rounds / num)  # log(1 − (j − 1)/L), 0 for the first round
    tiny = torch.finfo(dtype).tiny
    out = []
    for start in range(0, n, step):
        tc = t[:, start:start + step, None]
        scores = _chunk_scores(query[:, start:start + step], keys, norms, start, mask,
                               exclude_self)
        top = scores.topk(num, dim=-1)
        s_l = top.values.min(dim=-1, keepdim=True).values
        outside = scores.scatter(-1, top.indices, float("-inf")) - s_l  # <= 0, −inf in C
        # exp((sᵢ − s₍L₎)/t) <= 1 outside C: no overflow. −inf everywhere gives a 0 tail.
        tail = torch.logsumexp(outside / tc, dim=-1, keepdim=True).exp()
        power = torch.clamp(1.0 / tc, min=1.0)
        denom = num * torch.exp(power * log1m)  # (B, n, k)
        bound = (tail / denom).clamp(max=1.0)
        under = denom < tiny  # (1 − (j−1)/L)^{1/t} underflows at small t: 0/0 above
        for j in range(1, k):
            if not data_checks() or bool(under[..., j].any()):
                # tailʲ = Σ exp((xᵢ − c)/t) / L with c = max(t, 1)·log(1 − (j−1)/L): one
                # exponent per candidate, so neither factor over- or underflows alone.
                c = torch.clamp(tc, min=1.0) * log1m[j]
                log_b = torch.logsumexp((outside - c) / tc, dim=-1) - math.log(num)
                exact = log_b.clamp(max=0.0).exp()
                bound[..., j] = torch.where(under[..., j], exact, bound[..., j])
        out.append(bound)
    return torch.cat(out, dim=1)
