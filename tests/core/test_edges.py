"""Edge cases of the core: tail bound closed forms, mask layouts, repeated candidates, padding
content, empty batches, tracing and function transforms."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.func import grad, jacrev, vmap

from n3seq import (
    ContinuousKNN,
    KNNAggregate,
    N3Block,
    continuous_knn,
    hard_knn,
    knn_aggregate,
    window_candidates,
)
from n3seq.approximate import approx_knn_aggregate, preselect_candidates, tail_bound


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- tail_bound ------------------------------------------------------------------------------

class TestTailBoundClosedForm:
    """Query at 0, 1-D keys at p: scores −p² (up to the query's constant ‖q‖² = 0)."""

    @staticmethod
    def _bound(p2: list[float], num: int, k: int, t: float) -> torch.Tensor:
        keys = torch.tensor(p2, dtype=torch.float64).sqrt()[None, :, None]
        query = torch.zeros(1, 1, 1, dtype=torch.float64)
        return tail_bound(query, keys, num, k, t)[0, 0]

    @pytest.mark.parametrize("t", [0.5, 1.0, 3.0])
    def test_k1_and_k2(self, t):
        # C = {p²=0, p²=1}, s_L = −1; outside: −4, −9.
        bound = self._bound([0.0, 1.0, 4.0, 9.0], num=2, k=2, t=t)
        tail = math.exp(-3 / t) + math.exp(-8 / t)
        expected = [tail / 2, tail / (2 * 0.5 ** max(1.0, 1 / t))]
        torch.testing.assert_close(bound, torch.tensor(expected, dtype=torch.float64),
                                   rtol=1e-12, atol=0)

    def test_small_temperature_without_nan(self):
        # t = 1e-4: (1 − 1/L)^{1/t} = 2^-10000 underflows; the bound is exp(∓...) exactly.
        far = self._bound([0.0, 1.0, 2.0], num=2, k=2, t=1e-4)  # Δ = −1: e^{−10⁴}·2^{10⁴}/2
        near = self._bound([0.0, 1.0, 1.5], num=2, k=2, t=1e-4)  # Δ = −0.5: e^{−5000}·2^{10⁴}
        close = self._bound([0.0, 1.0, 1.001], num=2, k=1, t=1e-4)  # Δ = −1e-3
        assert torch.equal(far, torch.tensor([0.0, 0.0], dtype=torch.float64))
        assert torch.equal(near, torch.tensor([0.0, 1.0], dtype=torch.float64))
        torch.testing.assert_close(close, torch.tensor([math.exp(-10) / 2], dtype=torch.float64),
                                   rtol=1e-9, atol=0)

    @pytest.mark.parametrize("t", [1e-4, 1e-6, 1e-12])
    def test_random_data_small_temperature_still_bounds(self, t):
        g = _gen(0)
        x = torch.randn(2, 60, 2, generator=g, dtype=torch.float64).round(decimals=2)
        bound = tail_bound(x, x, 8, 4, t, exclude_self=True)
        assert torch.isfinite(bound).all() and (bound >= 0).all() and (bound <= 1).all()
        scores = -torch.cdist(x, x).square()
        valid = ~torch.eye(60, dtype=torch.bool).expand(2, -1, -1)
        w = continuous_knn(scores, 4, t, valid)
        chosen = preselect_candidates(x, x, 8, exclude_self=True)
        inside = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, chosen, True)
        beyond = w.masked_fill(inside[:, :, None, :], 0.0).sum(-1)
        assert (beyond <= bound * (1 + 1e-9) + 1e-12).all()


# --- N3Block masks ---------------------------------------------------------------------------

class TestRadiusMaskLayout:
    def test_non_prefix_mask_is_refused(self):
        block = N3Block(3, k=2, radius=2)
        x = torch.randn(2, 12, 3)
        mask = torch.ones(2, 12, dtype=torch.bool)
        mask[1, 4] = False  # a hole, not right padding
        with pytest.raises(ValueError, match="mask row 1 is not right-padded"):
            block(x, mask)
        mask = torch.ones(2, 12, dtype=torch.bool)
        mask[0, :3] = False  # left padding
        with pytest.raises(ValueError, match="mask row 0 is not right-padded"):
            block(x, mask)

    def test_right_padded_equals_trimmed(self):
        torch.manual_seed(0)
        block = N3Block(3, k=2, radius=2)
        x = torch.randn(1, 12, 3)
        mask = torch.arange(12)[None] < 9
        torch.testing.assert_close(block(x, mask)[:, :9], block(x[:, :9]))

    def test_global_block_takes_any_mask(self):
        torch.manual_seed(1)
        block = N3Block(3, k=2)
        x = torch.randn(1, 10, 3)
        mask = torch.tensor([[True, False] * 5])
        y = block(x, mask)
        torch.testing.assert_close(y[:, ::2], block(x[:, ::2]))


# --- candidates ------------------------------------------------------------------------------

class TestRepeatedCandidates:
    @pytest.mark.parametrize("rows", [[[0, 0, 1, 2]], [[2, 0, 1, 0]], [[1, 2, 3, 4], [5, 5, 6, 7]]])
    def test_refused(self, rows):
        x = torch.randn(1, 8, 2)
        cands = torch.tensor(rows).repeat(8, 1)[: 8][None]
        with pytest.raises(ValueError, match="must not list a key twice"):
            knn_aggregate(x, x, x, 2, candidates=cands)

    def test_distinct_unsorted_and_int32_candidates_accepted(self):
        g = _gen(2)
        x = torch.randn(2, 10, 3, generator=g, dtype=torch.float64)
        cands = torch.stack([torch.randperm(10, generator=g)[:5] for _ in range(10)])[None]
        out = knn_aggregate(x, x, x, 2, 0.5, candidates=cands.int())
        torch.testing.assert_close(out, knn_aggregate(x, x, x, 2, 0.5, candidates=cands))
        scores = -((x[:, :, None] - x[:, None]) ** 2).sum(-1)
        valid = torch.zeros(2, 10, 10, dtype=torch.bool).scatter_(-1, cands.expand(2, -1, -1), True)
        w = continuous_knn(scores, 2, 0.5, valid)
        torch.testing.assert_close(out, w @ x[:, None])


# --- padding content never matters -----------------------------------------------------------

PADDING_VALUES = [math.nan, math.inf, -math.inf, 1e30]


class TestPaddingContent:
    @pytest.mark.parametrize("bad", PADDING_VALUES)
    @pytest.mark.parametrize("path", ["global", "global-chunked", "window", "window-chunked"])
    def test_knn_aggregate_ignores_masked_keys_and_values(self, bad, path):
        g = _gen(3)
        q = torch.randn(2, 16, 3, generator=g)
        keys, values = torch.randn(2, 16, 3, generator=g), torch.randn(2, 16, 2, generator=g)
        mask = torch.ones(2, 16, dtype=torch.bool)
        mask[:, 12:] = False
        mask[0, 5] = False
        cands = window_candidates(16, 4) if path.startswith("window") else None
        chunk = 3 if path.endswith("chunked") else None
        results = []
        for content in (0.0, bad):
            k_in = keys.masked_fill(~mask[..., None], content).requires_grad_()
            v_in = values.masked_fill(~mask[..., None], content).requires_grad_()
            q_in = q.clone().requires_grad_()
            out = knn_aggregate(q_in, k_in, v_in, 2, 0.5, mask=mask, candidates=cands,
                                chunk_size=chunk)
            grads = torch.autograd.grad(out.square().sum(), (q_in, k_in, v_in))
            results.append((out, *grads))
        for clean, dirty in zip(*results):
            assert torch.isfinite(dirty).all()
            torch.testing.assert_close(dirty, clean)
        assert results[1][2][~mask].abs().max() == 0  # no gradient into padding

    @pytest.mark.parametrize("bad", PADDING_VALUES)
    def test_continuous_knn_ignores_masked_scores(self, bad):
        g = _gen(4)
        scores = torch.randn(3, 8, generator=g)
        mask = torch.rand(3, 8, generator=g) > 0.3
        mask[:, :3] = True
        clean = continuous_knn(scores.masked_fill(~mask, 0.0), 3, 0.4, mask)
        dirty_in = scores.masked_fill(~mask, bad).requires_grad_()
        dirty = continuous_knn(dirty_in, 3, 0.4, mask)
        assert torch.equal(dirty, clean)
        (g_s,) = torch.autograd.grad(dirty.square().sum(), dirty_in)
        assert torch.isfinite(g_s).all() and (g_s[~mask] == 0).all()
        assert torch.equal(hard_knn(dirty_in.detach(), 3, mask),
                           hard_knn(scores.masked_fill(~mask, 0.0), 3, mask))

    def test_valid_inf_is_reported_as_inf(self):
        scores = torch.randn(2, 6)
        scores[1, 4] = math.inf
        mask = torch.ones(2, 6, dtype=torch.bool)
        mask[0, 0] = False
        with pytest.raises(ValueError, match=r"first at index \(1, 4\), value inf\)"):
            continuous_knn(scores, 2, mask=mask)
        x = torch.randn(1, 6, 2)
        x[0, 3, 1] = -math.inf
        with pytest.raises(ValueError, match=r"keys .*first at index \(0, 3, 1\), value -inf"):
            knn_aggregate(torch.randn(1, 6, 2), x, torch.randn(1, 6, 2), 2)

    @pytest.mark.parametrize("bad", PADDING_VALUES)
    @pytest.mark.parametrize("radius", [None, 3])
    def test_n3block_ignores_padded_tokens(self, bad, radius):
        torch.manual_seed(5)
        block = N3Block(3, k=2, radius=radius)
        x = torch.randn(2, 12, 3)
        mask = torch.arange(12)[None] < torch.tensor([[12], [8]])
        clean = block(x.masked_fill(~mask[..., None], 0.0), mask)
        dirty_in = x.masked_fill(~mask[..., None], bad).requires_grad_()
        dirty = block(dirty_in, mask)
        assert torch.equal(dirty, clean)  # padded rows too: a padded token is a zero token
        (g_x,) = torch.autograd.grad(dirty.square().sum(), dirty_in)
        assert torch.isfinite(g_x).all() and (g_x[~mask] == 0).all()

    @pytest.mark.parametrize("bad", [math.nan, math.inf])
    def test_approximate_ignores_masked_keys(self, bad):
        g = _gen(6)
        x = torch.randn(2, 30, 3, generator=g)
        mask = torch.ones(2, 30, dtype=torch.bool)
        mask[1, 20:] = False
        dirty = x.masked_fill(~mask[..., None], bad)
        for needs_grad in (False, True):
            d = dirty.clone().requires_grad_(needs_grad)
            out = approx_knn_aggregate(x, d, d, 2, 0.5, num_candidates=6, mask=mask)
            clean = approx_knn_aggregate(x, x, x, 2, 0.5, num_candidates=6, mask=mask)
            torch.testing.assert_close(out, clean)
        torch.testing.assert_close(preselect_candidates(x, dirty, 6, mask=mask),
                                   preselect_candidates(x, x, 6, mask=mask))
        torch.testing.assert_close(tail_bound(x, dirty, 6, 2, 0.5, mask=mask),
                                   tail_bound(x, x, 6, 2, 0.5, mask=mask))


# --- empty batches ---------------------------------------------------------------------------

class TestEmpty:
    @pytest.mark.parametrize("shape", [(0, 7, 3), (2, 0, 3)])
    def test_knn_aggregate(self, shape):
        q = torch.randn(*shape, requires_grad=True)
        keys = torch.randn(shape[0], 7, 3, requires_grad=True)
        out = knn_aggregate(q, keys, keys, 2, 0.5)
        assert out.shape == (shape[0], shape[1], 2, 3)
        out.sum().backward()
        assert q.grad.shape == q.shape and keys.grad.shape == keys.shape

    def test_knn_aggregate_empty_batch_all_options(self):
        e = torch.randn(0, 6, 3)
        mask = torch.ones(0, 6, dtype=torch.bool)
        out = knn_aggregate(e, e, e, 3, torch.ones(0, 6), mask=mask, exclude_self=True,
                            candidates=window_candidates(6, 2), chunk_size=2)
        assert out.shape == (0, 6, 3, 3)

    def test_relaxation(self):
        assert continuous_knn(torch.randn(0, 10), 3).shape == (0, 3, 10)
        assert continuous_knn(torch.randn(4, 0, 10), 3, torch.ones(4, 0, 1)).shape == (4, 0, 3, 10)
        assert hard_knn(torch.randn(0, 5), 2).shape == (0, 2, 5)
        assert ContinuousKNN(2)(torch.randn(0, 4)).shape == (0, 2, 4)

    @pytest.mark.parametrize("shape", [(0, 10, 4), (3, 0, 4)])
    @pytest.mark.parametrize("radius", [None, 2])
    def test_n3block(self, shape, radius):
        block = N3Block(4, k=2, radius=radius)
        x = torch.randn(*shape, requires_grad=True)
        y = block(x, torch.ones(shape[:2], dtype=torch.bool))
        assert y.shape == (*shape[:2], 12)
        y.sum().backward()
        assert x.grad.shape == x.shape

    def test_approximate(self):
        e = torch.randn(0, 20, 3)
        assert approx_knn_aggregate(e, e, e, 2, num_candidates=4).shape == (0, 20, 2, 3)
        assert approx_knn_aggregate(e, e, e.requires_grad_(), 2, num_candidates=4).shape == \
            (0, 20, 2, 3)
        assert preselect_candidates(e, e, 4).shape == (0, 20, 4)
        assert tail_bound(e, e, 4, 2).shape == (0, 20, 2)
        assert KNNAggregate(2)(e, e, e).shape == (0, 20, 2, 3)


# --- tracing, scripting and torch.func ---------------------------------------------------------

class TestTransforms:
    def test_vmap_grad_jacrev_continuous_knn(self):
        s = torch.randn(5, 3, 10, generator=_gen(7), dtype=torch.float64)
        torch.testing.assert_close(vmap(lambda x: continuous_knn(x, 3, 0.5))(s),
                                   continuous_knn(s, 3, 0.5))
        weights = torch.arange(10.0, dtype=torch.float64)
        s_req = s.clone().requires_grad_()
        (continuous_knn(s_req, 3, 0.5) * weights).sum().backward()
        torch.testing.assert_close(grad(lambda x: (continuous_knn(x, 3, 0.5) * weights).sum())(s),
                                   s_req.grad)
        row = s[0, 0]
        jac = torch.autograd.functional.jacobian(lambda x: continuous_knn(x, 2, 0.5), row)
        torch.testing.assert_close(jacrev(lambda x: continuous_knn(x, 2, 0.5))(row), jac)
        torch.testing.assert_close(vmap(lambda x: hard_knn(x, 3))(s), hard_knn(s, 3))

    @pytest.mark.parametrize("options", [{}, {"exclude_self": True},
                                         {"candidates": window_candidates(20, 3)}])
    def test_vmap_and_grad_knn_aggregate(self, options):
        x = torch.randn(3, 2, 20, 4, generator=_gen(8), dtype=torch.float64)
        mask = torch.ones(2, 20, dtype=torch.bool)
        mask[1, 15:] = False
        options = options | ({"mask": mask} if "candidates" not in options else {})

        def f(xi):
            return knn_aggregate(xi, xi, xi, 3, 0.5, **options)

        torch.testing.assert_close(vmap(f)(x), torch.stack([f(xi) for xi in x]))
        x0 = x[0].clone().requires_grad_()
        f(x0).square().sum().backward()
        torch.testing.assert_close(grad(lambda xi: f(xi).square().sum())(x[0]), x0.grad)

    def test_vmap_n3block_and_approximate(self):
        torch.manual_seed(9)
        block = N3Block(4, k=3).double()
        x = torch.randn(3, 2, 20, 4, dtype=torch.float64)
        torch.testing.assert_close(vmap(block)(x), torch.stack([block(xi) for xi in x]))

        def approx(xi):
            return approx_knn_aggregate(xi, xi, xi, 3, 0.5, num_candidates=8, exclude_self=True)

        torch.testing.assert_close(vmap(approx)(x), torch.stack([approx(xi) for xi in x]))

    def test_jit_trace_warns_and_records_no_checks(self):
        from n3seq._checks import JIT_TRACE_WARNING

        s = torch.randn(4, 10, generator=_gen(10))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traced = torch.jit.trace(lambda a: continuous_knn(a, 2, 0.5), s)
        assert any(str(w.message) == JIT_TRACE_WARNING for w in caught)
        other = torch.randn(4, 10, generator=_gen(11)) * 100  # other values, other branches
        torch.testing.assert_close(traced(other), continuous_knn(other, 2, 0.5))
        bad = other.clone()
        bad[0, 0] = math.nan
        assert torch.isnan(traced(bad)).any()  # documented: the traced graph does not check

    @pytest.mark.parametrize("module", [N3Block(4, k=2), ContinuousKNN(2), KNNAggregate(2)])
    def test_jit_script_is_refused_clearly(self, module):
        with pytest.raises(RuntimeError, match="does not support torch.jit.script.*torch.compile"):
            torch.jit.script(module)

    def test_jit_script_of_a_function_fails(self):
        with pytest.raises(Exception):  # noqa: B017 - TorchScript's own error, documented
            torch.jit.script(continuous_knn)

    def test_torch_compile_keeps_the_nan_check(self):
        block = torch.compile(N3Block(4, k=2), backend="eager")
        x = torch.randn(1, 10, 4)
        assert torch.isfinite(block(x)).all()
        x[0, 2, 1] = math.nan
        with pytest.raises(RuntimeError, match="x contains NaN/Inf values"):
            block(x)

    def test_module_in_container_scripting_refused(self):
        with pytest.raises(RuntimeError, match="N3Block does not support torch.jit.script"):
            torch.jit.script(nn.Sequential(N3Block(4, k=2)))
