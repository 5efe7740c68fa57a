"""Test oracles: slow, obvious implementations that the library's paths are tested against.

Not a backend of anything: no n3seq function calls them. They follow the paper's equations
literally (full matrices, no chunking, no log-space tricks, one Python loop per round), are
correct for moderate temperatures and small inputs only, and are also the "naive full-matrix
relaxation" baseline of the benchmarks. The library's own implementations are chosen with
``backend=`` (:func:`n3seq.relaxation.choose_relaxation`): ``"fused"`` and the readable
``"straightforward"`` (:func:`n3seq.relaxation.straightforward_continuous_knn`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from n3seq._checks import as_temperature, check_k


def continuous_knn_reference(
    scores: Tensor, k: int, temperature: float | Tensor = 1.0, mask: Tensor | None = None
) -> Tensor:
    """Test oracle: ``wʲ = softmax(aʲ / t)``, ``aʲ⁺¹ = aʲ + log(1 − wʲ)`` computed directly.

    Masked candidates get logit −inf. Not numerically safe when a weight rounds to 1.
    """
    check_k(k)
    as_temperature(temperature, (*scores.shape[:-1], 1))  # positive and finite, or raises
    a = scores if mask is None else scores.masked_fill(~mask, float("-inf"))
    weights = []
    for _ in range(k):
        w = torch.softmax(a / temperature, dim=-1)
        weights.append(w)
        a = a + torch.log(1 - w)
    return torch.stack(weights, dim=-2)


def knn_aggregate_reference(
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    k: int,
    temperature: float | Tensor = 1.0,
    *,
    candidates: Tensor | None = None,
    mask: Tensor | None = None,
    exclude_self: bool = False,
) -> Tensor:
    """Test oracle: :func:`n3seq.knn_aggregate` with every query × candidate matrix at once."""
    check_k(k)
    b, n, _ = query.shape
    m = keys.shape[1]
    if candidates is None:
        candidates = torch.arange(m, device=query.device).expand(1, n, m)
    idx = candidates.expand(b, -1, -1)
    batch = torch.arange(b, device=query.device)[:, None, None]
    cand_keys, cand_values = keys[batch, idx], values[batch, idx]  # (B, N, O, ·)
    scores = -((query[:, :, None, :] - cand_keys) ** 2).sum(-1)
    valid = torch.ones_like(scores, dtype=torch.bool)
    if mask is not None:
        valid &= mask.expand(b, m)[batch, idx]
    if exclude_self:
        valid &= idx != torch.arange(n, device=query.device)[None, :, None]
    t = torch.as_tensor(temperature, dtype=scores.dtype, device=scores.device)
    t = t.expand(b, n)[..., None] if t.dim() else t
    w = continuous_knn_reference(scores, k, t, valid)
    return torch.einsum("bnko,bnof->bnkf", w, cand_values)
