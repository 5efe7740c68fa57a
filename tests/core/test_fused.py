"""The fused relaxation (fast path) equals the straightforward one, values and gradients."""

import pytest
import torch

from n3seq import knn_aggregate, window_candidates
from n3seq._fused import fused_continuous_knn, fused_knn_sums
from n3seq.relaxation import straightforward_continuous_knn


def _problem(seed, shape=(3, 5, 12), temperature=1.0, per_row=True, masked=False):
    g = torch.Generator().manual_seed(seed)
    scores = 3 * torch.randn(*shape, generator=g, dtype=torch.float64)
    scores.view(-1, shape[-1])[0, 3] = scores.view(-1, shape[-1])[0, 5]  # an exact tie
    if per_row:
        t = temperature * (torch.rand(*shape[:-1], 1, generator=g, dtype=torch.float64) + 0.5)
    else:
        t = torch.tensor(temperature, dtype=torch.float64)
    mask = None
    if masked:
        mask = torch.rand(*shape, generator=g) > 0.4
        mask[..., :6] = True
    return scores, t, mask


def _value_and_grads(fn, scores, k, t, mask):
    s, tt = scores.clone().requires_grad_(), t.clone().requires_grad_()
    w = fn(s, k, tt, mask)
    probe = torch.randn(w.shape, generator=torch.Generator().manual_seed(7), dtype=w.dtype)
    return (w, *torch.autograd.grad((w * probe).sum(), [s, tt]))


@pytest.mark.parametrize("temperature", [1e-3, 0.1, 1.0, 30.0])
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("k", [1, 5])
def test_equals_straightforward_path(temperature, per_row, masked, k):
    scores, t, mask = _problem(int(temperature * 1000) + k, temperature=temperature,
                               per_row=per_row, masked=masked)
    fast = _value_and_grads(fused_continuous_knn, scores, k, t, mask)
    slow = _value_and_grads(straightforward_continuous_knn, scores, k, t, mask)
    for name, a, b in zip(("weights", "d/dscores", "d/dtemperature"), fast, slow):
        # Rounding of the two orders of summation grows like 1/t²: compare at the tensor's scale.
        scale = float(b.detach().abs().max())
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12 + 1e-10 * scale, msg=name)
    if mask is not None:
        assert (fast[0].masked_select(~mask[..., None, :].expand_as(fast[0])) == 0).all()


def test_no_grad_path_equals_grad_path():
    scores, t, mask = _problem(1, masked=True)
    with torch.no_grad():
        a = fused_continuous_knn(scores, 4, t, mask)
    b = fused_continuous_knn(scores.requires_grad_(), 4, t, mask)
    assert torch.equal(a, b.detach())


def test_underflowed_other_weights():
    # Every other weight underflows in round 1: 1 − w_max comes from a logsumexp fallback.
    scores = torch.tensor([[0.0, -2000.0, -2001.0, -2003.0]], dtype=torch.float64)
    t = torch.tensor([[1.0]], dtype=torch.float64)
    fast = _value_and_grads(fused_continuous_knn, scores, 3, t, None)
    slow = _value_and_grads(straightforward_continuous_knn, scores, 3, t, None)
    for a, b in zip(fast, slow):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)


def test_underflowed_rows_in_float32_match_float64():
    # Row 0: the others are >= 100 below the max, so S_o underflows in float32 and round 2
    # comes from the fallback's logsumexp, whose own far-negative terms (-300) are floored;
    # one of its candidates is masked. Row 2 never underflows.
    row = torch.tensor([0.0, -100.0, -100.5, -101.0] + [-300.0] * 60 + [-120.0] * 4)
    scores = torch.stack([row, row.roll(3), torch.linspace(0.0, -5.0, 68)])
    mask = torch.ones(scores.shape, dtype=torch.bool)
    mask[0, 5] = False
    t = torch.tensor([[1.0], [0.5], [1.0]])
    probe = torch.randn(3, 3, 68, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    results = []
    for fn, dtype in ((fused_continuous_knn, torch.float32),
                      (straightforward_continuous_knn, torch.float64)):
        sc = scores.to(dtype).requires_grad_()
        tt = t.to(dtype).requires_grad_()
        w = fn(sc, 3, tt, mask)
        results.append((w, *torch.autograd.grad((w * probe.to(dtype)).sum(), [sc, tt])))
    # The temperature gradient sums g·s/t² with |s|/t up to 600: float32 cancellation
    # (the straightforward float32 path is off by twice as much).
    for a, b, tol in zip(*results, (1e-6, 1e-6, 1e-4), strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b.float(), rtol=1e-5, atol=tol)


@pytest.mark.parametrize("temperature", [1e-3, 1.0, 30.0])
@pytest.mark.parametrize(("per_row", "masked"), [(False, False), (True, True)])
def test_sums_equal_weights_times_values(temperature, per_row, masked):
    scores, t, mask = _problem(11, temperature=temperature, per_row=per_row, masked=masked)
    values = torch.randn(3, 12, 4, generator=torch.Generator().manual_seed(2),
                         dtype=torch.float64)
    expected = fused_continuous_knn(scores, 4, t, mask) @ values[:, None]
    torch.testing.assert_close(fused_knn_sums(scores, 4, t, values, mask), expected)


def test_gradcheck():
    scores, t, mask = _problem(3, shape=(2, 7), masked=True)
    scores.requires_grad_()
    t.requires_grad_()
    assert torch.autograd.gradcheck(lambda s, tt: fused_continuous_knn(s, 3, tt, mask),
                                    (scores, t))


@pytest.mark.parametrize("mode", ["global", "global-mask-self-chunked", "windows"])
def test_knn_aggregate_fast_equals_straightforward(mode):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 24, 6, generator=g, dtype=torch.float64)
    v = torch.randn(2, 24, 3, generator=g, dtype=torch.float64)
    t = torch.rand(2, 24, generator=g, dtype=torch.float64) + 0.3
    kwargs = {}
    if mode == "global-mask-self-chunked":
        mask = torch.ones(2, 24, dtype=torch.bool)
        mask[1, 18:] = False
        kwargs = {"mask": mask, "exclude_self": True, "chunk_size": 10}
    elif mode == "windows":
        kwargs = {"candidates": window_candidates(24, 4), "chunk_size": 9}
    results = []
    for backend in ("fused", "straightforward"):
        inputs = [x.clone().requires_grad_(), v.clone().requires_grad_(),
                  t.clone().requires_grad_()]
        out = knn_aggregate(inputs[0], inputs[0], inputs[1], 4, inputs[2], backend=backend,
                            **kwargs)
        results.append((out, *torch.autograd.grad(out.square().sum(), inputs)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
