"""knn_aggregate and window_candidates against brute-force references."""

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

from n3seq import KNNAggregate, knn_aggregate, window_candidates
from n3seq.reference import knn_aggregate_reference


def brute_force(query, keys, values, k, t, candidates=None, mask=None, exclude_self=False):
    """One query at a time, plain Python over candidates, the paper's recursion in float64."""
    b, n, _ = query.shape
    m = keys.shape[1]
    out = torch.zeros(b, n, k, values.shape[-1], dtype=torch.float64)
    t = torch.as_tensor(t, dtype=torch.float64).expand(b, n)
    for bi in range(b):
        for qi in range(n):
            cands = range(m) if candidates is None else candidates[min(bi, len(candidates) - 1), qi].tolist()
            cands = [c for c in cands if (mask is None or mask[bi, c]) and not (exclude_self and c == qi)]
            a = torch.stack([-((query[bi, qi] - keys[bi, c]) ** 2).sum() for c in cands]).double()
            for j in range(k):
                z = a / t[bi, qi]
                w = torch.softmax(z, 0)
                out[bi, qi, j] = sum(w[i] * values[bi, c].double() for i, c in enumerate(cands))
                # log(1 − wᵢ) = log Σ_{l≠i} w_l: log1p(−wᵢ) would lose digits as wᵢ → 1.
                others = [torch.cat([z[:i], z[i + 1:]]).logsumexp(0) for i in range(len(cands))]
                a = a + torch.stack(others) - z.logsumexp(0)
    return out


@st.composite
def sets(draw):
    b = draw(st.integers(1, 2))
    n = draw(st.integers(2, 9))
    e = draw(st.integers(1, 4))
    f = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, e, generator=g, dtype=torch.float64)
    v = torch.randn(b, n, f, generator=g, dtype=torch.float64)
    mask = None
    if draw(st.booleans()):
        mask = torch.rand(b, n, generator=g) < 0.7
        mask[:, :2] = True
    exclude_self = draw(st.booleans())
    t = draw(st.sampled_from([0.1, 1.0, 5.0]))
    return x, v, mask, exclude_self, t


class TestAgainstBruteForce:
    @given(sets(), st.integers(1, 3))
    def test_global(self, problem, k):
        x, v, mask, exclude_self, t = problem
        valid = x.shape[1] if mask is None else int(mask.sum(-1).min())
        k = min(k, valid - int(exclude_self))
        out = knn_aggregate(x, x, v, k, t, mask=mask, exclude_self=exclude_self)
        torch.testing.assert_close(out, brute_force(x, x, v, k, t, None, mask, exclude_self))

    @given(sets(), st.integers(0, 10_000))
    def test_explicit_candidates(self, problem, seed):
        x, v, mask, exclude_self, t = problem
        _b, n, _ = x.shape
        g = torch.Generator().manual_seed(seed)
        # Token 0 and 1 are always real and never the query for most rows; no key twice.
        rest = [2 + torch.randperm(n - 2, generator=g)[: max(2, n // 2) - 2] for _ in range(n)]
        cands = torch.stack([torch.cat([torch.tensor([0, 1]), r]) for r in rest])[None]
        k = 1
        out = knn_aggregate(x, x, v, k, t, candidates=cands, mask=mask, exclude_self=exclude_self)
        expected = brute_force(x, x, v, k, t, cands, mask, exclude_self)
        torch.testing.assert_close(out, expected)

    def test_per_batch_candidates_and_temperature(self):
        g = torch.Generator().manual_seed(0)
        q = torch.randn(2, 6, 3, generator=g, dtype=torch.float64)
        keys = torch.randn(2, 8, 3, generator=g, dtype=torch.float64)
        v = torch.randn(2, 8, 5, generator=g, dtype=torch.float64)
        cands = torch.stack([torch.randperm(8, generator=g)[:4].expand(6, 4) for _ in range(2)])
        t = torch.rand(2, 6, generator=g, dtype=torch.float64) + 0.1
        out = knn_aggregate(q, keys, v, 3, t, candidates=cands)
        torch.testing.assert_close(out, brute_force(q, keys, v, 3, t, cands))

    @given(sets(), st.integers(1, 2))
    def test_windows(self, problem, radius):
        x, v, _mask, exclude_self, t = problem
        n = x.shape[1]
        if n < 2 * radius + 1:
            return
        cands = window_candidates(n, radius)
        out = knn_aggregate(x, x, v, 1, t, candidates=cands, mask=None, exclude_self=exclude_self)
        torch.testing.assert_close(out, brute_force(x, x, v, 1, t, cands, None, exclude_self))

    def test_naive_reference_module_agrees(self):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, 30, 4, generator=g, dtype=torch.float64)
        mask = torch.rand(2, 30, generator=g) < 0.8
        cands = window_candidates(30, 4)
        for kwargs in ({}, {"candidates": cands}):
            out = knn_aggregate(x, x, x, 3, 0.7, mask=mask, exclude_self=True, **kwargs)
            ref = knn_aggregate_reference(x, x, x, 3, 0.7, mask=mask, exclude_self=True, **kwargs)
            torch.testing.assert_close(out, ref)


class TestChunking:
    @pytest.mark.parametrize("mode", ["global", "window"])
    def test_chunked_equals_unchunked_with_gradients(self, mode):
        g = torch.Generator().manual_seed(2)
        x = torch.randn(2, 40, 5, generator=g, dtype=torch.float64, requires_grad=True)
        v = torch.randn(2, 40, 3, generator=g, dtype=torch.float64, requires_grad=True)
        t = (torch.rand(2, 40, generator=g, dtype=torch.float64) + 0.2).requires_grad_()
        mask = torch.rand(2, 40, generator=g) < 0.8
        cands = window_candidates(40, 5) if mode == "window" else None
        grads = []
        outs = []
        for chunk in (None, 7):
            out = knn_aggregate(x, x, v, 4, t, candidates=cands, mask=mask, exclude_self=True,
                                chunk_size=chunk)
            outs.append(out)
            grads.append(torch.autograd.grad((out * out).sum(), (x, v, t)))
        torch.testing.assert_close(outs[0], outs[1])
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b)

    @pytest.mark.parametrize("needs", ["qkvt", "v", "kt", "q"])
    def test_chunked_candidates_gradients_of_some_inputs(self, needs):
        # The chunked candidates path has its own backward; per-batch candidates, separate
        # query/keys/values and gradients of only some inputs against the unchunked path.
        g = torch.Generator().manual_seed(5)
        q = torch.randn(2, 30, 4, generator=g, dtype=torch.float64)
        keys = torch.randn(2, 30, 4, generator=g, dtype=torch.float64)
        v = torch.randn(2, 30, 6, generator=g, dtype=torch.float64)
        t = torch.rand(2, 30, generator=g, dtype=torch.float64) + 0.2
        inputs = dict(zip("qkvt", (q, keys, v, t)))
        wanted = [inputs[name].requires_grad_() for name in needs]
        cands = torch.cat([window_candidates(30, 3), window_candidates(30, 3, torch.tensor([25]))])
        mask = torch.rand(2, 30, generator=g) < 0.9
        results = []
        for chunk in (None, 4):
            out = knn_aggregate(q, keys, v, 3, t, candidates=cands, mask=mask, chunk_size=chunk)
            results.append((out, *torch.autograd.grad(out.square().sum(), wanted)))
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        with torch.no_grad():
            plain = knn_aggregate(q, keys, v, 3, t, candidates=cands, mask=mask, chunk_size=4)
        assert torch.equal(plain, results[1][0])


class TestGradcheck:
    def test_global_with_mask(self):
        g = torch.Generator().manual_seed(3)
        q = torch.randn(1, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
        keys = torch.randn(1, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
        v = torch.randn(1, 6, 2, generator=g, dtype=torch.float64, requires_grad=True)
        t = (torch.rand(1, 5, generator=g, dtype=torch.float64) + 0.3).requires_grad_()
        mask = torch.tensor([[True, True, False, True, True, False]])

        def fn(q, keys, v, t):
            return knn_aggregate(q, keys, v, 3, t, mask=mask, chunk_size=2)

        assert torch.autograd.gradcheck(fn, (q, keys, v, t))

    def test_candidates_exclude_self(self):
        g = torch.Generator().manual_seed(4)
        x = torch.randn(1, 7, 2, generator=g, dtype=torch.float64, requires_grad=True)
        v = torch.randn(1, 7, 2, generator=g, dtype=torch.float64, requires_grad=True)
        t = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        cands = window_candidates(7, 2)

        def fn(x, v, t):
            return knn_aggregate(x, x, v, 2, t, candidates=cands, exclude_self=True, chunk_size=3)

        assert torch.autograd.gradcheck(fn, (x, v, t))


class TestWindowCandidates:
    @pytest.mark.parametrize(("n", "r"), [(5, 0), (5, 2), (10, 3), (33, 16), (100, 7)])
    def test_count_borders_and_self(self, n, r):
        c = window_candidates(n, r)[0]
        assert c.shape == (n, 2 * r + 1)
        assert torch.all(c >= 0) and torch.all(c < n)
        assert torch.all(c[:, 1:] - c[:, :-1] == 1)  # contiguous
        assert all(i in c[i].tolist() for i in range(n))
        for i in range(r, n - r):
            assert c[i].tolist() == list(range(i - r, i + r + 1))
        assert c[0].tolist() == list(range(2 * r + 1))
        assert c[-1].tolist() == list(range(n - 2 * r - 1, n))

    def test_errors(self):
        with pytest.raises(ValueError, match="radius must be >= 0, got -1"):
            window_candidates(5, -1)
        with pytest.raises(ValueError, match=r"num_tokens=4 is smaller than the window 2\*radius\+1=5"):
            window_candidates(4, 2)


class TestDtypes:
    def test_bfloat16_inputs_compute_in_float32(self):
        x = torch.randn(1, 20, 4)
        out16 = knn_aggregate(x.bfloat16(), x.bfloat16(), x.bfloat16(), 2, 0.5)
        out32 = knn_aggregate(x.bfloat16().float(), x.bfloat16().float(), x.bfloat16().float(), 2, 0.5)
        assert out16.dtype == torch.bfloat16
        torch.testing.assert_close(out16.float(), out32, atol=2e-2, rtol=2e-2)

    def test_under_autocast(self):
        x = torch.randn(1, 20, 4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = knn_aggregate(x, x, x, 2, 0.5, exclude_self=True)
        torch.testing.assert_close(out, knn_aggregate(x, x, x, 2, 0.5, exclude_self=True))


def _args(**kw):
    x = torch.randn(2, 6, 3)
    base = {"query": x, "keys": x, "values": torch.randn(2, 6, 4), "k": 2}
    return base | kw


class TestErrors:
    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"query": torch.randn(6, 3)}, ValueError, r"query must have shape \(B, N, E\), got \(6, 3\)"),
            ({"keys": torch.randn(3, 6, 3)}, ValueError, r"batch sizes differ: query \(2, 6, 3\), keys \(3, 6, 3\)"),
            ({"keys": torch.randn(2, 6, 5)}, ValueError, "must share the embedding dim E"),
            ({"values": torch.randn(2, 5, 4)}, ValueError, "same number of tokens M"),
            ({"k": 0}, ValueError, "k must be >= 1, got 0"),
            ({"k": 7}, ValueError, "k=7 is larger than the number of candidates M=6"),
            ({"k": 6, "exclude_self": True}, ValueError, "M=5 after exclude_self"),
            ({"temperature": 0.0}, ValueError, "temperature must be positive and finite, got 0.0"),
            ({"temperature": math.nan}, ValueError, "temperature must be positive and finite"),
            ({"temperature": torch.ones(3)}, ValueError, r"temperature must be broadcastable to \(2, 6\)"),
            ({"query": torch.arange(36).view(2, 6, 3)}, TypeError, "query must be a floating-point tensor, got dtype torch.int64"),
            ({"mask": torch.ones(2, 6)}, TypeError, "mask must be a bool tensor"),
            ({"mask": torch.ones(2, 5, dtype=torch.bool)}, ValueError, r"mask must be broadcastable to \(B, M\)"),
            ({"mask": torch.tensor([[1, 1, 1, 1, 1, 1], [0] * 6]).bool()}, ValueError, r"row \(1, 0\) has no valid candidate"),
            ({"mask": torch.tensor([[1, 1, 0, 0, 0, 0]] * 2).bool(), "k": 2, "exclude_self": True}, ValueError,
             "k=2 is larger than the number of valid candidates"),
            ({"candidates": torch.zeros(1, 6, 3)}, TypeError, "candidates must be an int64/int32 tensor"),
            ({"candidates": torch.zeros(1, 5, 3, dtype=torch.long)}, ValueError, r"candidates must have shape \(B or 1, N, O\)"),
            ({"candidates": torch.full((1, 6, 3), 6)}, ValueError, r"candidates must index keys in \[0, 6\)"),
            ({"candidates": torch.zeros(1, 6, 1, dtype=torch.long)}, ValueError, "larger than the number of candidates O=1"),
            ({"candidates": window_candidates(6, 1), "k": 3, "exclude_self": True}, ValueError,
             "k=3 is larger than the number of valid candidates"),
        ],
    )
    def test_bad_arguments(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            knn_aggregate(**_args(**kwargs))

    @pytest.mark.parametrize("name", ["query", "keys", "values"])
    def test_non_finite_inputs(self, name):
        args = _args()
        bad = args[name].clone()
        bad[1, 2, 0] = math.inf
        args[name] = bad
        if name != "values":
            args["query" if name == "keys" else "keys"] = torch.randn(2, 6, 3)
        with pytest.raises(ValueError, match=rf"{name} contains 1 non-finite \(NaN/Inf\) value\(s\) "
                                             rf"\(first at index \(1, 2, 0\), value inf\)"):
            knn_aggregate(**args)

    def test_exclude_self_needs_same_set(self):
        with pytest.raises(ValueError, match="N == M"):
            knn_aggregate(torch.randn(1, 4, 2), torch.randn(1, 5, 2), torch.randn(1, 5, 2), 1,
                          exclude_self=True)


class TestModule:
    def test_module_equals_function(self):
        x = torch.randn(2, 12, 3)
        mod = KNNAggregate(k=3, exclude_self=True)
        torch.testing.assert_close(mod(x, x, x, 0.4), knn_aggregate(x, x, x, 3, 0.4, exclude_self=True))


class TestWindowLengths:
    def test_windows_stay_inside_each_sequence(self):
        c = window_candidates(10, 2, lengths=torch.tensor([10, 6]))
        assert c.shape == (2, 10, 5)
        torch.testing.assert_close(c[0], window_candidates(10, 2)[0])
        torch.testing.assert_close(c[1, :6], window_candidates(6, 2)[0])
        assert torch.all(c[1, 6:] == torch.arange(1, 6))  # padded queries: last window

    def test_bad_lengths(self):
        with pytest.raises(ValueError, match=r"lengths must lie in .* = \[5, 10\], got \[10, 4\]"):
            window_candidates(10, 2, lengths=torch.tensor([10, 4]))
