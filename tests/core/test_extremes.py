"""Finite in → finite out: extreme temperatures and feature scales, values and gradients.

Every accepted temperature (down to float32/float64 subnormals) gives finite weights and
gradients, equal to hard kNN (and its zero gradient) in the t → 0 limit; large but finite
features never overflow inside (float64 takes over where float32 squared distances would
overflow; float64 overflow is an ``OverflowError``). Property tests sweep feature scales
1e-30 … 1e30 and temperatures 1e-45 … 1e38 against float64 references.
"""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch import nn

from n3seq import N3Block, continuous_knn, hard_knn, knn_aggregate, window_candidates
from n3seq.approximate import approx_knn_aggregate, preselect_candidates, tail_bound


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def brute_force(x, v, k, t, exclude_self=True, mask=None, candidates=None):
    """float64 reference: full squared distances, the relaxation on them, weighted sums."""
    x, v = x.double(), v.double()
    b, n, _ = x.shape
    d = ((x[:, :, None, :] - x[:, None, :, :]) ** 2).sum(-1)  # (B, N, N)
    valid = torch.ones(b, n, n, dtype=torch.bool)
    if exclude_self:
        valid &= ~torch.eye(n, dtype=torch.bool)
    if mask is not None:
        valid &= mask[:, None, :]
    if candidates is not None:
        chosen = torch.zeros(b, n, n, dtype=torch.bool)
        chosen.scatter_(-1, candidates.expand(b, -1, -1), True)
        valid &= chosen
    w = continuous_knn(-d, k, torch.as_tensor(t, dtype=torch.float64), valid)
    return w @ v[:, None]


class TestTinyTemperatures:
    @pytest.mark.parametrize(("dtype", "t"), [
        (torch.float32, 1e-30), (torch.float32, 1e-38), (torch.float32, 1e-39),
        (torch.float32, 1e-45), (torch.float64, 1e-300), (torch.float64, 1e-308),
        (torch.float64, 1e-310), (torch.float64, 5e-324),
    ])
    @pytest.mark.parametrize("masked", [False, True])
    def test_continuous_knn_equals_hard_knn_with_zero_gradients(self, dtype, t, masked):
        g = _gen(0)
        scores = torch.randn(4, 3, 12, generator=g, dtype=dtype).requires_grad_()
        mask = (torch.rand(4, 3, 12, generator=g) > 0.3) | (torch.arange(12) < 5) if masked \
            else None
        temp = torch.tensor(t, dtype=dtype, requires_grad=True)
        assert temp.item() > 0  # a representable (possibly subnormal) temperature
        w = continuous_knn(scores, 4, temp, mask)
        assert torch.equal(w.detach(), hard_knn(scores.detach(), 4, mask))
        probe = torch.randn(w.shape, generator=g, dtype=dtype)
        gs, gt = torch.autograd.grad((w * probe).sum(), (scores, temp))
        assert torch.isfinite(gs).all() and torch.isfinite(gt)
        assert gs.abs().max() == 0 and gt == 0  # hard kNN is piecewise constant

    @pytest.mark.parametrize("t", [1e-39, 1e-45])
    def test_knn_aggregate_tiny_tensor_temperature(self, t):
        g = _gen(1)
        x = torch.randn(2, 30, 3, generator=g).requires_grad_()
        v = torch.randn(2, 30, 2, generator=g).requires_grad_()
        temp = torch.full((2, 30), t, requires_grad=True)
        out = knn_aggregate(x, x, v, 3, temp, exclude_self=True)
        expected = brute_force(x.detach(), v.detach(), 3, 1e-300)  # float64: the hard limit
        torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)
        gx, gv, gt = torch.autograd.grad(out.sum(), (x, v, temp))
        assert torch.isfinite(gx).all() and torch.isfinite(gt).all()
        assert gx.abs().max() == 0 and gt.abs().max() == 0
        # d(sum of hard neighbours)/dv counts how often each token is a neighbour.
        counts = torch.zeros(2, 30)
        idx = torch.cdist(x.detach().double(), x.detach().double()).add(
            torch.eye(30) * 1e9).topk(3, largest=False).indices
        counts.scatter_add_(1, idx.flatten(1), torch.ones(2, 90))
        torch.testing.assert_close(gv, counts[..., None].expand(-1, -1, 2))

    @pytest.mark.parametrize("bias", [1e-45, 1e-39, 1e-30])
    def test_n3block_tiny_temperature_bias(self, bias):
        torch.manual_seed(0)
        block = N3Block(4, k=3, temperature_bias=bias)
        x = torch.randn(2, 20, 4, requires_grad=True)
        y = block(x)
        assert torch.isfinite(y).all()
        reference = N3Block(4, k=3, temperature_bias=1e-20)
        reference.load_state_dict(block.state_dict())
        assert torch.equal(y, reference(x))  # both the hard limit
        y.square().sum().backward()
        assert torch.isfinite(x.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in block.parameters())

    @pytest.mark.parametrize("log_t", [-86.5, -95.0, -103.9, -120.0, -1e4])
    def test_n3block_collapsed_learned_temperature(self, log_t):
        torch.manual_seed(1)
        block = N3Block(4, k=2)
        nn.init.constant_(block.temperature_net[-1].bias, log_t)  # t = 0.1·e^log_t: subnormal/0
        x = torch.randn(2, 16, 4, requires_grad=True)
        y = block(x)
        assert torch.isfinite(y).all()
        hard = N3Block(4, k=2, temperature_net=False, temperature_bias=1e-30)
        hard.embedding = block.embedding
        torch.testing.assert_close(y, hard(x))
        y.square().sum().backward()
        for name, p in [("x", x), *block.named_parameters()]:
            assert p.grad is None or torch.isfinite(p.grad).all(), name

    @pytest.mark.parametrize(("log_t", "dtype"), [
        (87.0, torch.float32), (100.0, torch.float32), (1e4, torch.float32),
        (700.0, torch.float64), (1e4, torch.float64)])
    def test_n3block_exploded_learned_temperature(self, log_t, dtype):
        # 0.1·e^log_t overflows the dtype: the largest temperature (uniform weights), and
        # finite gradients (an exp that overflowed before the clamp gave NaN, 0 · inf).
        torch.manual_seed(1)
        block = N3Block(4, k=2).to(dtype)
        nn.init.constant_(block.temperature_net[-1].bias, log_t)
        x = torch.randn(2, 16, 4, dtype=dtype, requires_grad=True)
        y = block(x)
        assert torch.isfinite(y).all()
        flat = N3Block(4, k=2, temperature_net=False,
                       temperature_bias=torch.finfo(dtype).max).to(dtype)
        flat.embedding = block.embedding
        torch.testing.assert_close(y, flat(x))
        y.square().sum().backward()
        for name, p in [("x", x), *block.named_parameters()]:
            assert p.grad is None or torch.isfinite(p.grad).all(), name

    @pytest.mark.parametrize("t", [1e30, 3e38, 1e300, 10**400])
    def test_huge_temperature_gives_uniform_weights(self, t):
        scores = torch.randn(3, 7, generator=_gen(2))
        w = continuous_knn(scores, 2, t)
        torch.testing.assert_close(w, torch.full_like(w, 1 / 7))

    @pytest.mark.parametrize("t", [1e-3, 1e-6, 1e-10, 1e-20, 1e-38])
    def test_exact_ties_stay_soft_with_zero_temperature_gradient(self, t):
        # Documented: a tie stays soft for every t and the weights do not depend on t, so the
        # temperature gradient is exactly 0 (it was rounding noise up to 2e32 before).
        scores = torch.tensor([[1.0, 1.0, 0.0, -1.0, -2.0]], requires_grad=True)
        temp = torch.tensor(t, requires_grad=True)
        w = continuous_knn(scores, 3, temp)
        torch.testing.assert_close(w[0, :, :3], torch.tensor(
            [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
        probe = torch.randn(w.shape, generator=_gen(1))
        (gt,) = torch.autograd.grad((w * probe).sum(), temp)
        assert gt == 0


class TestLargeInputs:
    @pytest.mark.parametrize("scale", [1e19, 1e25, 1e30])
    @pytest.mark.parametrize("candidates", [False, True])
    def test_knn_aggregate_float32_features_beyond_float32_squares(self, scale, candidates):
        x = torch.randn(2, 24, 4, generator=_gen(3)) * scale
        cands = window_candidates(24, 4) if candidates else None
        out = knn_aggregate(x, x, x, 3, 0.5, exclude_self=True, candidates=cands)
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        expected = brute_force(x, x, 3, 0.5, candidates=cands)
        torch.testing.assert_close(out.double() / scale, expected / scale, rtol=1e-6, atol=1e-6)

    def test_knn_aggregate_large_features_gradients(self):
        x = (torch.randn(1, 20, 3, generator=_gen(4)) * 1e19).requires_grad_()
        temp = torch.full((1, 20), 0.5, requires_grad=True)
        out = knn_aggregate(x, x, x, 2, temp, exclude_self=True)
        gx, gt = torch.autograd.grad(out.sum(), (x, temp))
        assert torch.isfinite(gx).all() and torch.isfinite(gt).all()

    @pytest.mark.parametrize("scale", [1e36, 1e38])
    def test_continuous_knn_scores_near_float32_max(self, scale):
        scores = (torch.rand(5, 9, generator=_gen(5)) * 2 - 1) * scale
        for t in (0.5, 1e-3, 1e-30):
            w = continuous_knn(scores, 3, t)
            assert torch.isfinite(w).all()
            torch.testing.assert_close(w.double(), continuous_knn(scores.double(), 3, t))

    def test_float64_overflow_is_an_error(self):
        x = torch.randn(1, 10, 3, dtype=torch.float64) * 1e160
        with pytest.raises(OverflowError, match="knn_aggregate overflows float64"):
            knn_aggregate(x, x, x, 2, 0.5)
        with pytest.raises(OverflowError, match="overflow float64"):
            preselect_candidates(x, x, 3)
        scores = torch.rand(2, 6, dtype=torch.float64) * 1e307
        with pytest.raises(OverflowError, match="scores / temperature overflows float64"):
            continuous_knn(scores, 2, 1e-300)

    def test_n3block_large_input(self):
        block = N3Block(4, k=2, embedding=nn.Identity(), temperature_net=False,
                        temperature_bias=0.5)
        x = torch.randn(2, 12, 4, generator=_gen(6)) * 1e19
        y = block(x)
        assert torch.isfinite(y).all()

    def test_approximate_large_features(self):
        x = torch.randn(2, 40, 3, generator=_gen(7)) * 1e20
        out = approx_knn_aggregate(x, x, x, 3, 0.5, num_candidates=8, exclude_self=True)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.double() / 1e20, brute_force(x, x, 3, 0.5) / 1e20,
                                   rtol=1e-6, atol=1e-6)
        exact = preselect_candidates(x.double(), x.double(), 8, exclude_self=True)
        assert torch.equal(preselect_candidates(x, x, 8, exclude_self=True), exact)
        bound = tail_bound(x, x, 8, 3, 0.5, exclude_self=True)
        assert torch.isfinite(bound).all()


# --- property tests --------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(exponent=st.integers(-30, 30), t=st.sampled_from([1e-30, 1e-3, 0.5, 10.0, 1e30]),
       k=st.integers(1, 3), masked=st.booleans(), windowed=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_knn_aggregate_finite_and_matches_float64_over_scales(exponent, t, k, masked, windowed,
                                                               seed):
    scale = 10.0 ** exponent
    g = _gen(seed)
    x = torch.randn(2, 12, 3, generator=g) * scale
    v = torch.randn(2, 12, 2, generator=g) * scale
    mask = None
    if masked:
        mask = torch.rand(2, 12, generator=g) > 0.3
        mask[:, :8] = True
    cands = window_candidates(12, 4) if windowed else None
    out = knn_aggregate(x, x, v, k, t, exclude_self=True, mask=mask, candidates=cands)
    assert torch.isfinite(out).all()
    expected = brute_force(x, v, k, t, mask=mask, candidates=cands)
    # Scores below float32 resolution of t (scale² ≪ t ≪ 1) make rounds 2+ ill-conditioned in
    # any float32 arithmetic; there only round 1 is compared.
    rounds = 1 if (scale**2 < 1e-3 * t and t < 1) else k
    torch.testing.assert_close(out[..., :rounds, :].double() / scale,
                               expected[..., :rounds, :] / scale, rtol=2e-3, atol=2e-3)


@settings(max_examples=80, deadline=None)
@given(exponent=st.integers(-37, 37), t_exponent=st.integers(-45, 38), k=st.integers(1, 4),
       masked=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_continuous_knn_finite_over_scales_and_temperatures(exponent, t_exponent, k, masked,
                                                            seed):
    g = _gen(seed)
    scores = (torch.randn(3, 10, generator=g) * 10.0**exponent).requires_grad_()
    t = 10.0**t_exponent
    mask = None
    if masked:
        mask = torch.rand(3, 10, generator=g) > 0.4
        mask[:, :4] = True
    w = continuous_knn(scores, k, t, mask)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(3, k))
    reference = continuous_knn(scores.detach().double(), k, t, mask)
    spread = 10.0**exponent
    # Scores much closer than t ≪ 1 make rounds 2+ amplify differences by ~1/t each (the
    # documented ill-conditioned regime, like exact ties): there values agree only to float32
    # resolution and gradients may exceed its range. Everywhere else both are checked.
    if k == 1 or spread > 1e3 * t or t >= 1:
        torch.testing.assert_close(w.detach().double(), reference, rtol=1e-3, atol=1e-3)
        grad = torch.autograd.grad((w * torch.randn(w.shape, generator=g)).sum(), scores)[0]
        assert torch.isfinite(grad).all()


@settings(max_examples=40, deadline=None)
@given(t_exponent=st.integers(-45, 2), seed=st.integers(0, 2**31 - 1))
def test_tail_bound_finite_in_unit_interval(t_exponent, seed):
    x = torch.randn(1, 30, 2, generator=_gen(seed))
    bound = tail_bound(x, x, 6, 4, 10.0**t_exponent, exclude_self=True)
    assert torch.isfinite(bound).all() and (bound >= 0).all() and (bound <= 1).all()


def test_no_nan_from_finite_inputs_in_float16_and_bfloat16():
    for dtype in (torch.float16, torch.bfloat16):
        x = (torch.randn(1, 20, 4, generator=_gen(8)) * 100).to(dtype)
        for t in (1e-30, 0.5, 1e30):
            out = knn_aggregate(x, x, x, 2, t, exclude_self=True)
            assert out.dtype == dtype and torch.isfinite(out).all()
    assert math.isfinite(float(torch.finfo(torch.float16).max))
