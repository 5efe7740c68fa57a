import pytest
import torch

from n3seq.sets import ContextNorm, context_norm


def test_unmasked_zero_mean_unit_variance():
    x = 3 + 2 * torch.randn(2, 40, 5, dtype=torch.float64)
    y = context_norm(x, eps=0.0)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 5, dtype=torch.float64))
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(2, 5, dtype=torch.float64))


def test_masked_statistics_ignore_padding():
    x = torch.randn(2, 30, 3, dtype=torch.float64)
    mask = torch.rand(2, 30, generator=torch.Generator().manual_seed(0)) > 0.4
    y = context_norm(x, mask)
    for b in range(2):
        torch.testing.assert_close(y[b, mask[b]], context_norm(x[b:b + 1, mask[b]])[0])
    assert bool((y[~mask] == 0).all())


def test_gradcheck():
    x = torch.randn(1, 6, 2, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False, True, True, False]])
    assert torch.autograd.gradcheck(lambda t: context_norm(t, mask), (x,))


def test_module_equals_function():
    x = torch.randn(2, 10, 4)
    torch.testing.assert_close(ContextNorm(1e-3)(x), context_norm(x, eps=1e-3))


def test_errors():
    with pytest.raises(ValueError, match=r"x must have shape \(B, N, D\)"):
        context_norm(torch.randn(10, 4))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        context_norm(torch.randn(1, 10, 4), torch.ones(1, 10))
    with pytest.raises(ValueError, match=r"mask must be broadcastable to \(B, N\)"):
        context_norm(torch.randn(1, 10, 4), torch.ones(1, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="row 1 has no real point"):
        context_norm(torch.randn(2, 3, 1), torch.tensor([[True] * 3, [False] * 3]))
