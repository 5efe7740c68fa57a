"""Gradients at collapsing temperatures: saturated rows have (exponentially) zero derivative.

Learned temperatures do reach 1e-13 in practice (an audio model did before its tokens were
normalised). There 1/t² overflows float32, so every path must avoid forming it against a zero
gradient, and the fused path must agree with the straightforward one.
"""

import pytest
import torch

from n3seq import knn_aggregate


@pytest.mark.parametrize("t", [1e-4, 1e-8, 1e-13, 1e-20])
def test_knn_aggregate_gradients_at_tiny_temperature(t):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 50, 4, generator=g) * 30
    mask = torch.rand(1, 50, generator=g) > 0.2
    grads = {}
    for fused in (True, False):
        xi = x.clone().requires_grad_()
        temp = torch.full((1, 50), t, requires_grad=True)
        out = knn_aggregate(xi, xi, xi, 3, temp, exclude_self=True, mask=mask,
                            backend="fused" if fused else "straightforward")
        grads[fused] = torch.autograd.grad(out.square().sum(), (xi, temp))
    for fused_grad, plain_grad in zip(grads[True], grads[False]):
        assert torch.isfinite(fused_grad).all()
        torch.testing.assert_close(fused_grad, plain_grad, atol=1e-3, rtol=1e-4)
    # Every row is saturated at these temperatures (distance gaps ~ 10 ≫ t).
    assert grads[False][1].abs().max() < 1e-6
