"""continuous_knn and hard_knn: properties, independent references, gradients, errors."""

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

from n3seq import ContinuousKNN, continuous_knn, hard_knn
from n3seq.reference import continuous_knn_reference

TEMPERATURES = st.sampled_from([1e-3, 1e-2, 0.1, 0.5, 1.0, 3.0, 10.0, 100.0, 1e3])


@st.composite
def problems(draw, with_mask: bool = False, distinct: bool = False):
    """(scores, k, mask) with shape (rows, O); ties drawn on purpose unless ``distinct``."""
    rows = draw(st.integers(1, 4))
    o = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    if distinct:
        scores = torch.randperm(o, generator=g).double().expand(rows, o) * 1.0
        scores = scores + torch.rand(rows, 1, generator=g, dtype=torch.float64)
        scores = torch.stack([r[torch.randperm(o, generator=g)] for r in scores])
    else:
        # Few distinct levels, so ties are frequent.
        scores = torch.randint(-3, 4, (rows, o), generator=g).double()
    mask = None
    valid = o
    if with_mask:
        mask = torch.rand(rows, o, generator=g) < 0.7
        mask[:, 0] = True
        valid = int(mask.sum(-1).min())
    k = draw(st.integers(1, valid))
    return scores, k, mask


class TestSmoke:
    def test_shape_and_dtype(self):
        w = continuous_knn(torch.randn(2, 3, 10), k=4, temperature=0.5)
        assert w.shape == (2, 3, 4, 10)
        assert w.dtype == torch.float32

    def test_float64_kept(self):
        assert continuous_knn(torch.randn(5, dtype=torch.float64), 2).dtype == torch.float64

    def test_hard_knn_shape(self):
        assert hard_knn(torch.randn(7, 9), k=3).shape == (7, 3, 9)


class TestProperties:
    @given(problems(with_mask=True), TEMPERATURES)
    def test_rows_are_distributions_over_valid_candidates(self, problem, t):
        scores, k, mask = problem
        w = continuous_knn(scores, k, t, mask)
        assert torch.all(w >= 0) and torch.all(w <= 1)
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=w.dtype))
        assert torch.all(w.masked_select(~mask[:, None, :].expand_as(w)) == 0)

    @given(problems(with_mask=True), TEMPERATURES)
    def test_k_equals_one_is_softmax(self, problem, t):
        scores, _, mask = problem
        w = continuous_knn(scores, 1, t, mask)[..., 0, :]
        expected = torch.softmax(scores.masked_fill(~mask, -math.inf) / t, dim=-1)
        torch.testing.assert_close(w, expected)

    @given(problems(with_mask=True, distinct=True))
    def test_low_temperature_is_hard_knn(self, problem):
        scores, k, mask = problem  # distinct scores at least 1e-3 * gap apart
        w = continuous_knn(scores, k, 1e-4, mask)
        torch.testing.assert_close(w, hard_knn(scores, k, mask), atol=1e-6, rtol=0)

    @given(problems(with_mask=True, distinct=True))
    def test_low_temperature_rounds_never_take_more_than_one(self, problem):
        scores, k, mask = problem
        total = continuous_knn(scores, k, 1e-3, mask).sum(-2)
        assert torch.all(total <= 1 + 1e-6)

    def test_rounds_can_take_more_than_one_at_moderate_temperature(self):
        # At t = 1 round 2 is w(1 − w) / (1 − Σ w²): for w₁ = softmax([3, 1, 2])
        # w₁ + w₂ exceeds 1 at the largest score. The relaxation is not a partition of unity
        # over rounds; only its t → 0 limit is.
        scores = torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64)
        w1 = torch.softmax(scores, -1)
        w2 = w1 * (1 - w1) / (1 - (w1**2).sum())
        w = continuous_knn(scores, 2, 1.0)
        torch.testing.assert_close(w[0], w1)
        torch.testing.assert_close(w[1], w2)
        assert w.sum(0)[0] > 1

    @given(problems(with_mask=True), TEMPERATURES, st.integers(0, 1000))
    def test_permuting_candidates_permutes_weights(self, problem, t, seed):
        scores, k, mask = problem
        perm = torch.randperm(scores.shape[-1], generator=torch.Generator().manual_seed(seed))
        w = continuous_knn(scores, k, t, mask)
        wp = continuous_knn(scores[:, perm], k, t, mask[:, perm])
        torch.testing.assert_close(wp, w[..., perm])

    @given(problems(with_mask=True), st.sampled_from([0.3, 1.0, 3.0, 10.0]))
    def test_equals_naive_reference(self, problem, t):
        scores, k, mask = problem
        expected = continuous_knn_reference(scores, k, t, mask)
        torch.testing.assert_close(continuous_knn(scores, k, t, mask), expected)

    @given(problems(with_mask=True), TEMPERATURES)
    def test_tied_scores_get_equal_weights(self, problem, t):
        scores, k, mask = problem
        w = continuous_knn(scores, k, t, mask)
        for r in range(scores.shape[0]):
            valid = mask[r].nonzero().flatten().tolist()
            for i in valid:
                for j in valid:
                    if scores[r, i] == scores[r, j]:
                        torch.testing.assert_close(w[r, :, i], w[r, :, j])

    def test_per_row_temperature(self):
        scores = torch.randn(3, 6, dtype=torch.float64)
        t = torch.tensor([[0.1], [1.0], [5.0]], dtype=torch.float64)
        w = continuous_knn(scores, 2, t)
        for r in range(3):
            torch.testing.assert_close(w[r], continuous_knn(scores[r], 2, float(t[r])))

    def test_saturated_rows_stay_finite(self):
        # Gaps of 1e4 / t: the first weight rounds to exactly 1 in float32.
        scores = torch.tensor([[0.0, -1e4, -2e4, -3e4]], requires_grad=True)
        t = torch.tensor([[1e-3]], requires_grad=True)
        w = continuous_knn(scores, 3, t)
        torch.testing.assert_close(w.detach(), hard_knn(scores.detach(), 3))
        (w * torch.randn_like(w)).sum().backward()
        assert torch.isfinite(scores.grad).all() and torch.isfinite(t.grad).all()

    def test_authors_variant_differs_in_the_limit(self):
        # Dividing once by t and recursing at t = 1 (the released code) splits round 2
        # between the nearest and the second-nearest candidate as t → 0.
        scores = torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64)
        t = 1e-3
        paper = continuous_knn(scores, 2, t)
        authors = continuous_knn(scores / t, 2)
        torch.testing.assert_close(paper[1], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        torch.testing.assert_close(authors[1], torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64),
                                   atol=1e-6, rtol=0)


class TestHardKNN:
    def test_orders_by_decreasing_score(self):
        w = hard_knn(torch.tensor([0.5, 2.0, -1.0, 1.0]), 3)
        assert w.argmax(-1).tolist() == [1, 3, 0]

    def test_ties_broken_by_lowest_index(self):
        w = hard_knn(torch.tensor([1.0, 2.0, 2.0, 1.0, 2.0]), 4)
        assert w.argmax(-1).tolist() == [1, 2, 4, 0]

    def test_mask_skips_candidates(self):
        mask = torch.tensor([True, False, True, True])
        w = hard_knn(torch.tensor([1.0, 9.0, 3.0, 2.0]), 2, mask)
        assert w.argmax(-1).tolist() == [2, 3]


class TestGradients:
    def test_gradcheck_scores_and_temperature(self):
        scores = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
        t = (torch.rand(3, 1, dtype=torch.float64) + 0.2).requires_grad_()
        assert torch.autograd.gradcheck(lambda s, t: continuous_knn(s, 4, t), (scores, t))

    def test_gradcheck_with_mask(self):
        scores = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
        t = (torch.rand(4, 1, dtype=torch.float64) + 0.2).requires_grad_()
        mask = torch.rand(4, 7) < 0.6
        mask[:, :3] = True
        assert torch.autograd.gradcheck(lambda s, t: continuous_knn(s, 3, t, mask), (scores, t))

    def test_gradcheck_low_and_high_temperature(self):
        scores = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
        for t in (0.05, 50.0):
            assert torch.autograd.gradcheck(lambda s, t=t: continuous_knn(s, 3, t), (scores,))

    @given(problems(with_mask=True), TEMPERATURES)
    def test_masked_gradients_finite_and_zero(self, problem, t):
        scores, k, mask = problem
        scores = scores.clone().requires_grad_()
        temp = torch.tensor(t, dtype=torch.float64, requires_grad=True)
        w = continuous_knn(scores, k, temp, mask)
        (w * torch.linspace(-1, 1, w.shape[-1], dtype=w.dtype)).sum().backward()
        assert torch.isfinite(scores.grad).all() and torch.isfinite(temp.grad)
        assert torch.all(scores.grad[~mask] == 0)

    def test_masked_scores_may_be_infinite(self):
        scores = torch.tensor([[1.0, -math.inf, 0.5, math.nan]], requires_grad=True)
        mask = torch.tensor([[True, False, True, False]])
        t = torch.tensor(0.7, requires_grad=True)
        w = continuous_knn(scores, 2, t, mask)
        w[..., 0].sum().backward()
        assert torch.isfinite(w).all() and torch.isfinite(scores.grad).all()
        assert torch.isfinite(t.grad)


class TestErrors:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"k": 0}, "k must be >= 1, got 0"),
            ({"k": 7}, "k=7 is larger than the number of candidates O=5"),
            ({"k": 2.0}, "k must be an int"),
            ({"temperature": 0.0}, "temperature must be positive and finite, got 0.0"),
            ({"temperature": -1.0}, "temperature must be positive and finite, got -1.0"),
            ({"temperature": math.nan}, "temperature must be positive and finite, got nan"),
            ({"temperature": torch.ones(3, 1)}, r"temperature must be broadcastable to \(2, 1\)"),
            ({"temperature": torch.tensor([[1.0], [-2.0]])}, "got -2.0"),
            ({"mask": torch.zeros(2, 5, dtype=torch.bool)}, "has no valid candidate"),
            ({"mask": torch.tensor([[1, 1, 0, 0, 0]] * 2).bool(), "k": 3},
             "k=3 is larger than the number of valid candidates"),
            ({"mask": torch.ones(2, 5)}, "mask must be a bool tensor"),
            ({"mask": torch.ones(3, 5, dtype=torch.bool)}, r"mask must be broadcastable"),
        ],
    )
    def test_bad_arguments(self, kwargs, match):
        args = {"scores": torch.randn(2, 5), "k": 2} | kwargs
        with pytest.raises((ValueError, TypeError), match=match):
            continuous_knn(**args)

    def test_nan_scores(self):
        scores = torch.randn(2, 5)
        scores[1, 3] = math.nan
        with pytest.raises(ValueError, match=r"scores contains 1 non-finite \(NaN/Inf\) value\(s\) "
                                             r"\(first at index \(1, 3\), value nan\)"):
            continuous_knn(scores, 2)

    def test_integer_scores(self):
        with pytest.raises(TypeError, match="scores must be a floating-point tensor, got dtype torch.int64"):
            continuous_knn(torch.arange(5), 2)

    def test_hard_knn_errors(self):
        with pytest.raises(ValueError, match="k=6 is larger"):
            hard_knn(torch.randn(5), 6)
        with pytest.raises(TypeError, match="floating-point"):
            hard_knn(torch.arange(5), 2)


class TestModule:
    def test_module_equals_function(self):
        scores = torch.randn(4, 9)
        module = ContinuousKNN(k=3, temperature=0.3)
        torch.testing.assert_close(module(scores), continuous_knn(scores, 3, 0.3))
        assert "k=3" in repr(module)

    def test_module_rejects_bad_config(self):
        with pytest.raises(ValueError, match="k must be >= 1"):
            ContinuousKNN(k=0)
        with pytest.raises(ValueError, match="temperature must be positive"):
            ContinuousKNN(k=1, temperature=-0.1)

    def test_torch_compile(self):
        scores = torch.randn(4, 9)
        compiled = torch.compile(ContinuousKNN(k=3, temperature=0.3), backend="eager")
        torch.testing.assert_close(compiled(scores), continuous_knn(scores, 3, 0.3))


class TestTinyTemperatures:
    """Learned temperatures can collapse towards 0; gradients must stay finite there."""

    @pytest.mark.parametrize("t", [6e-13, 1e-20, 1e-30])
    def test_continuous_knn_gradients_finite(self, t):
        scores = torch.tensor([[-4517.5, -3931.3, -577.06, -105.9, 0.0, -33.2, -75.3, -279.8]],
                              requires_grad=True)
        mask = torch.ones(1, 8, dtype=torch.bool)
        mask[0, 4] = False
        temp = torch.tensor(t, requires_grad=True)
        w = continuous_knn(scores, 4, temp, mask)
        torch.testing.assert_close(w.detach(), hard_knn(scores.detach(), 4, mask))
        (w * torch.arange(8.0)).sum().backward()
        assert torch.isfinite(temp.grad) and torch.isfinite(scores.grad).all()
