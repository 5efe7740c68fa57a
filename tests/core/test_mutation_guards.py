"""Tests that small deliberate bugs used to survive (issue 10, "mutation testing found them").

Each test names the bug it catches. They use only the public API, so they hold whatever the
implementation inside looks like:

- the brute-force comparison of :func:`knn_aggregate` with chunks of 1…5 queries, so that chunk
  boundaries meet an independent reference (the other oracles use N <= 9, one chunk);
- a temperature gradient that is zero when only the temperature needs a gradient (the
  chunked candidates path has its own backward);
- ``differences=False`` of :class:`N3Block` ignored;
- :class:`N3Block` not starting at ``t = temperature_bias``.
"""

from __future__ import annotations

import pytest
import torch
from einops import rearrange
from torch import nn

from n3seq import N3Block, knn_aggregate


def loop_oracle(query, keys, values, k, t, candidates=None, mask=None, exclude_self=False):
    """One query at a time, written from the paper's recursion; differentiable, float64.

    ``wʲ = softmax(aʲ / t)``, ``aʲ⁺¹ = aʲ + log(1 − wʲ)``, ``a¹ = −‖q − xᵢ‖²`` over the valid
    candidates of the query (in the key mask, not the query itself with ``exclude_self``).
    """
    b, n, _ = query.shape
    m = keys.shape[1]
    t = torch.as_tensor(t, dtype=torch.float64).expand(b, n)
    rows = []
    for bi in range(b):
        row = []
        for qi in range(n):
            if candidates is None:
                cands = list(range(m))
            else:
                cands = candidates[min(bi, candidates.shape[0] - 1), qi].tolist()
            cands = [c for c in cands
                     if (mask is None or bool(mask[bi, c])) and not (exclude_self and c == qi)]
            idx = torch.tensor(cands)
            a = -(query[bi, qi] - keys[bi, idx]).square().sum(-1)
            out = []
            for _ in range(k):
                w = torch.softmax(a / t[bi, qi], dim=0)
                out.append(w @ values[bi, idx])
                a = a + torch.log1p(-w)
            row.append(torch.stack(out))
        rows.append(torch.stack(row))
    return torch.stack(rows)


B, N, E, F, K = 2, 11, 3, 2, 3


def _problem(kind: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(B, N, E, generator=g, dtype=torch.float64)
    keys = torch.randn(B, N, E, generator=g, dtype=torch.float64)
    values = torch.randn(B, N, F, generator=g, dtype=torch.float64)
    t = 0.3 + torch.rand(B, N, generator=g, dtype=torch.float64)
    candidates = mask = None
    if "candidates" in kind:  # 7 distinct random keys per query (the query itself among them)
        score = torch.rand(B, N, N, generator=g)
        score[:, torch.arange(N), torch.arange(N)] = -1.0  # the query's own index first
        candidates = score.argsort(-1)[..., :7]
    if "masked" in kind:
        mask = torch.ones(B, N, dtype=torch.bool)
        mask[0, [2, 9]] = False
        mask[1, [0, 5]] = False
    return query, keys, values, t, candidates, mask


KINDS = ["global", "candidates", "masked global", "masked candidates"]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, None])
@pytest.mark.parametrize("kind", KINDS)
def test_chunks_meet_the_loop_oracle_without_grad(kind, chunk_size):
    query, keys, values, t, candidates, mask = _problem(kind)
    expected = loop_oracle(query, keys, values, K, t, candidates, mask, exclude_self=True)
    with torch.no_grad():
        out = knn_aggregate(query, keys, values, K, t, candidates=candidates, mask=mask,
                            exclude_self=True, chunk_size=chunk_size)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 3, 4, None])
@pytest.mark.parametrize("kind", KINDS)
def test_chunks_meet_the_loop_oracle_with_grad(kind, chunk_size):
    query, keys, values, t, candidates, mask = _problem(kind, seed=1)
    probe = torch.randn(B, N, K, F, generator=torch.Generator().manual_seed(9),
                        dtype=torch.float64)
    inputs = [x.clone().requires_grad_() for x in (query, keys, values, t)]
    expected = loop_oracle(*inputs[:3], K, inputs[3], candidates, mask, exclude_self=True)
    want = torch.autograd.grad((expected * probe).sum(), inputs)
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    out = knn_aggregate(*inputs[:3], K, inputs[3], candidates=candidates, mask=mask,
                        exclude_self=True, chunk_size=chunk_size)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-10, atol=1e-12)
    got = torch.autograd.grad((out * probe).sum(), inputs)
    for name, g, w in zip(("query", "keys", "values", "temperature"), got, want):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("chunk_size", [1, 4, None])
@pytest.mark.parametrize("kind", KINDS)
def test_temperature_gradient_when_only_the_temperature_needs_one(kind, chunk_size):
    # The bug: the candidates path's backward skipped the relaxation's gradient unless the
    # queries or keys needed one, so a learned temperature on fixed embeddings got zeros.
    query, keys, values, t, candidates, mask = _problem(kind, seed=2)
    probe = torch.randn(B, N, K, F, generator=torch.Generator().manual_seed(3),
                        dtype=torch.float64)
    t_ref = t.clone().requires_grad_()
    expected = loop_oracle(query, keys, values, K, t_ref, candidates, mask, exclude_self=True)
    (want,) = torch.autograd.grad((expected * probe).sum(), t_ref)
    t_ours = t.clone().requires_grad_()
    out = knn_aggregate(query, keys, values, K, t_ours, candidates=candidates, mask=mask,
                        exclude_self=True, chunk_size=chunk_size)
    (got,) = torch.autograd.grad((out * probe).sum(), t_ours)
    assert want.abs().min() > 0  # every query's temperature matters here
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-12)


def test_scalar_temperature_gradient_on_chunked_candidates():
    query, keys, values, _, candidates, _ = _problem("candidates", seed=4)
    t = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    (want,) = torch.autograd.grad(loop_oracle(query, keys, values, K, t, candidates).sum(), t)
    out = knn_aggregate(query, keys, values, K, t, candidates=candidates, chunk_size=2)
    (got,) = torch.autograd.grad(out.sum(), t)
    assert want.abs() > 0
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-12)


# --------------------------------------------------------------------------- N3Block


def _random_temperature_net(block: N3Block, seed: int) -> None:
    """Non-zero weights in the zero-initialised last layer: a temperature that varies."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        last = block.temperature_net[-1]
        last.weight.copy_(0.3 * torch.randn(last.weight.shape, generator=g))
        last.bias.copy_(0.3 * torch.randn(last.bias.shape, generator=g))


@pytest.mark.parametrize("radius", [None, 3])
def test_differences_false_gives_the_raw_neighbours(radius):
    torch.manual_seed(0)
    block = N3Block(4, k=2, radius=radius)
    _random_temperature_net(block, 1)
    raw = N3Block(4, k=2, radius=radius, differences=False)
    raw.load_state_dict(block.state_dict())  # the same block but for the output form
    x = torch.randn(2, 15, 4)
    diff, out = block(x), raw(x)
    torch.testing.assert_close(out[..., :4], x)
    torch.testing.assert_close(out[..., 4:], diff[..., 4:] + x.repeat(1, 1, 2))
    assert not torch.allclose(out[..., 4:], diff[..., 4:])


@pytest.mark.parametrize("bias", [0.1, 0.37, 2.0])
def test_block_starts_at_the_temperature_bias(bias):
    torch.manual_seed(5)
    block = N3Block(5, k=3, temperature_bias=bias)
    x = torch.randn(2, 20, 5)
    torch.testing.assert_close(block.temperature(x), torch.full((2, 20), bias))
    emb = block.embedding(x)
    expected = knn_aggregate(emb, emb, x, 3, bias, exclude_self=True) - x[:, :, None]
    torch.testing.assert_close(block(x)[..., 5:], rearrange(expected, "b t k d -> b t (k d)"))


def test_block_temperature_follows_its_net():
    # The counterpart of the start: once the net's last layer is non-zero, t varies by token
    # as temperature_bias · exp(log_t).
    torch.manual_seed(6)
    block = N3Block(5, k=3, temperature_bias=0.25)
    _random_temperature_net(block, 2)
    x = torch.randn(1, 12, 5)
    log_t = block.temperature_net(x)[..., 0]
    torch.testing.assert_close(block.temperature(x), 0.25 * log_t.exp())
    assert log_t.std() > 0.01
    with pytest.raises(AssertionError):
        torch.testing.assert_close(block.temperature(x), torch.full((1, 12), 0.25))


def test_fixed_temperature_block_uses_the_bias():
    block = N3Block(4, k=2, embedding=nn.Identity(), temperature_net=False,
                    temperature_bias=0.6)
    x = torch.randn(1, 10, 4)
    expected = knn_aggregate(x, x, x, 2, 0.6, exclude_self=True) - x[:, :, None]
    torch.testing.assert_close(block(x)[..., 4:], rearrange(expected, "b t k d -> b t (k d)"))
