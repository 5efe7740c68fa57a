"""Approximate aggregation: pre-selection, equality with the exact path, the tail bound."""

import importlib.util

import pytest
import torch

from n3seq import continuous_knn, knn_aggregate
from n3seq.approximate import approx_knn_aggregate, preselect_candidates, tail_bound

HAS_FAISS = importlib.util.find_spec("faiss") is not None


def _sets(b=2, n=60, e=5, f=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, n, e, generator=g, dtype=dtype),
            torch.randn(b, n, f, generator=g, dtype=dtype))


def _scores(x, mask=None, exclude_self=False):
    scores = -torch.cdist(x, x).square()
    valid = torch.ones_like(scores, dtype=torch.bool)
    if mask is not None:
        valid &= mask[:, None, :]
    if exclude_self:
        valid &= ~torch.eye(x.shape[1], dtype=torch.bool)
    return scores, valid


class TestPreselect:
    @pytest.mark.parametrize("exclude_self", [False, True])
    def test_equals_brute_force_nearest(self, exclude_self):
        x, _ = _sets()
        mask = torch.rand(2, 60, generator=torch.Generator().manual_seed(1)) > 0.3
        scores, valid = _scores(x, mask, exclude_self)
        expected = scores.masked_fill(~valid, float("-inf")).topk(10).indices
        got = preselect_candidates(x, x, 10, mask=mask, exclude_self=exclude_self,
                                   chunk_size=7)
        assert got.shape == (2, 60, 10)
        assert torch.equal(got, expected)

    @pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed (pip install 'n3seq[faiss]')")
    @pytest.mark.parametrize("exclude_self", [False, True])
    def test_faiss_equals_torch(self, exclude_self):
        x, _ = _sets(n=200, e=8, dtype=torch.float32)
        mask = torch.ones(2, 200, dtype=torch.bool)
        mask[1, 150:] = False
        a = preselect_candidates(x, x, 12, mask=mask, exclude_self=exclude_self)
        b = preselect_candidates(x, x, 12, mask=mask, exclude_self=exclude_self,
                                 search="faiss")
        assert torch.equal(a.sort(-1).values, b.sort(-1).values)

    @pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed (pip install 'n3seq[faiss]')")
    def test_faiss_aggregate_equals_torch_in_values_and_gradients(self):
        x, v = _sets(n=200, e=8, f=4, dtype=torch.float32)
        outs, grads = [], []
        for search in ("torch", "faiss"):
            xx, vv = x.clone().requires_grad_(), v.clone().requires_grad_()
            out = approx_knn_aggregate(xx, xx, vv, 3, 0.5, num_candidates=16,
                                       exclude_self=True, search=search)
            out.square().sum().backward()
            outs.append(out.detach())
            grads.append((xx.grad, vv.grad))
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
        for a, b in zip(grads[1], grads[0], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"num_candidates": 0}, ValueError, "num_candidates must be >= 1"),
            ({"num_candidates": 60, "exclude_self": True}, ValueError, "valid candidates"),
            ({"num_candidates": 2.0}, TypeError, "num_candidates must be an int"),
            ({"num_candidates": 4, "search": "annoy"}, ValueError, "search must be one of"),
        ],
    )
    def test_bad_arguments(self, kwargs, error, match):
        x, _ = _sets()
        with pytest.raises(error, match=match):
            preselect_candidates(x, x, **kwargs)

    def test_masked_count(self):
        x, _ = _sets()
        mask = torch.ones(2, 60, dtype=torch.bool)
        mask[0, 5:] = False
        with pytest.raises(ValueError, match=r"valid candidates \(5"):
            preselect_candidates(x, x, 6, mask=mask)


class TestApproxAggregate:
    def test_all_candidates_equals_exact_with_gradients(self):
        x, v = _sets()
        t = torch.rand(2, 60, dtype=torch.float64) + 0.2
        inputs = [x.clone().requires_grad_(), v.clone().requires_grad_(),
                  t.clone().requires_grad_()]
        exact = knn_aggregate(inputs[0], inputs[0], inputs[1], 4, inputs[2], exclude_self=True)
        grads_exact = torch.autograd.grad(exact.square().sum(), inputs)
        approx = approx_knn_aggregate(inputs[0], inputs[0], inputs[1], 4, inputs[2],
                                      num_candidates=59, exclude_self=True)
        grads_approx = torch.autograd.grad(approx.square().sum(), inputs)
        torch.testing.assert_close(approx, exact)
        for a, e in zip(grads_approx, grads_exact):
            torch.testing.assert_close(a, e)

    def test_close_to_exact_when_the_bound_is_small(self):
        # Well separated clusters of 8: a query's 7 cluster mates hold all the weight.
        g = torch.Generator().manual_seed(3)
        centres = 20 * torch.randn(1, 25, 1, 6, generator=g, dtype=torch.float64)
        x = (centres + 0.3 * torch.randn(1, 25, 8, 6, generator=g, dtype=torch.float64))
        x = x.flatten(1, 2)
        v = torch.randn(1, 200, 4, generator=g, dtype=torch.float64)
        bound = tail_bound(x, x, 7, k=5, temperature=0.5, exclude_self=True)
        assert bound.max() < 1e-12
        approx = approx_knn_aggregate(x, x, v, 5, 0.5, num_candidates=7, exclude_self=True)
        exact = knn_aggregate(x, x, v, 5, 0.5, exclude_self=True)
        torch.testing.assert_close(approx, exact, atol=1e-9, rtol=0)

    @pytest.mark.parametrize("exclude_self", [False, True])
    def test_inference_path_equals_autograd_path(self, exclude_self):
        x, v = _sets(n=50)
        mask = torch.ones(2, 50, dtype=torch.bool)
        mask[0, 40:] = False
        t = torch.rand(2, 50, dtype=torch.float64) + 0.2
        with torch.no_grad():
            fast = approx_knn_aggregate(x, x, v, 3, t, num_candidates=9, mask=mask,
                                        exclude_self=exclude_self, chunk_size=16)
        slow = approx_knn_aggregate(x, x, v.requires_grad_(), 3, t, num_candidates=9,
                                    mask=mask, exclude_self=exclude_self)
        torch.testing.assert_close(fast, slow.detach())

    def test_k_larger_than_num_candidates(self):
        x, v = _sets()
        with pytest.raises(ValueError, match="num_candidates"):
            approx_knn_aggregate(x, x, v, 9, num_candidates=8)


class TestTailBound:
    @pytest.mark.parametrize("temperature", [1e-2, 0.3, 1.0, 10.0, 1e3])
    @pytest.mark.parametrize("num", [7, 20])
    def test_bounds_the_exact_weight_beyond_the_lth_candidate(self, temperature, num):
        x, _ = _sets(n=80, e=2, seed=int(temperature * 10) + num)
        x = x.round(decimals=1)  # ties in the scores
        mask = torch.rand(2, 80, generator=torch.Generator().manual_seed(2)) > 0.2
        scores, valid = _scores(x, mask, exclude_self=True)
        k = 6
        w = continuous_knn(scores, k, temperature, valid)  # (B, N, k, M)
        chosen = preselect_candidates(x, x, num, mask=mask, exclude_self=True)
        inside = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, chosen, True)
        beyond = w.masked_fill(inside[:, :, None, :], 0.0).sum(-1)  # (B, N, k)
        bound = tail_bound(x, x, num, k, temperature, mask=mask, exclude_self=True)
        assert bound.shape == (2, 80, k)
        assert ((bound >= 0) & (bound <= 1)).all()
        assert (beyond <= bound * (1 + 1e-9) + 1e-12).all()

    def test_bound_zero_when_all_candidates_are_kept(self):
        x, _ = _sets(n=30)
        assert tail_bound(x, x, 29, 3, 0.5, exclude_self=True).abs().max() == 0


class TestDeprecatedBackendName:
    """``backend=`` of the pre-selection was renamed ``search=`` (``backend`` names the
    implementation of a function elsewhere in n3seq): the old name warns and still works."""

    def test_preselect_backend_warns_and_equals_search(self):
        x, _ = _sets()
        with pytest.warns(DeprecationWarning, match=r"use search='torch'"):
            old = preselect_candidates(x, x, 6, backend="torch")
        assert torch.equal(old, preselect_candidates(x, x, 6, search="torch"))

    def test_approx_backend_warns_and_equals_search(self):
        x, v = _sets()
        with pytest.warns(DeprecationWarning, match=r"approx_knn_aggregate\(backend=\.\.\.\)"):
            old = approx_knn_aggregate(x, x, v, 2, 0.5, num_candidates=6, backend="torch")
        new = approx_knn_aggregate(x, x, v, 2, 0.5, num_candidates=6, search="torch")
        assert torch.equal(old, new)

    def test_unknown_value_under_the_old_name_is_refused(self):
        x, _ = _sets()
        with pytest.warns(DeprecationWarning), pytest.raises(ValueError,
                                                             match="search must be one of"):
            preselect_candidates(x, x, 6, backend="annoy")

    def test_disagreeing_names_are_refused(self):
        x, _ = _sets()
        with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="disagree"):
            preselect_candidates(x, x, 6, search="faiss", backend="torch")
