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


# --- Bad and unusual inputs (issue 9) -------------------------------------------------------

@pytest.mark.parametrize("value", [float("inf"), float("nan"), 3e38])
def test_padding_content_never_matters(value):
    # Before: x * mask turned inf in padding into NaN, and every output became NaN.
    x = torch.randn(2, 12, 3)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[0, 8:] = False
    want = context_norm(x, mask)
    dirty = torch.where(mask[..., None], x, torch.full_like(x, value))
    torch.testing.assert_close(context_norm(dirty, mask), want, rtol=0, atol=0)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("scale", [1e-38, 1e-20, 1e19, 1e25, 3e38])
def test_finite_at_every_scale_and_scale_invariant(scale, masked):
    # Before: the variance overflowed at 1e19 and gave NaN.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 12, 3, generator=g) * 2 - 1
    mask = (torch.rand(2, 12, generator=g) > 0.3) if masked else None
    y = context_norm(x * scale, mask, eps=0.0)
    assert bool(torch.isfinite(y).all())
    torch.testing.assert_close(y, context_norm(x.double(), mask, eps=0.0).float(),
                               rtol=1e-4, atol=1e-4)


def test_gradient_finite_at_large_scale():
    x = (torch.randn(1, 10, 2, dtype=torch.float64) * 1e200).requires_grad_()
    context_norm(x).pow(2).sum().backward()
    assert bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize(("eps", "exc", "match"), [
    (-1.0, ValueError, "eps must be >= 0"),
    (float("nan"), ValueError, "eps must be finite"),
    ("small", TypeError, "eps must be a real number"),
])
def test_eps_errors(eps, exc, match):
    with pytest.raises(exc, match=match):
        context_norm(torch.randn(1, 5, 2), eps=eps)
    with pytest.raises(exc, match=match):
        ContextNorm(eps)


def test_empty_inputs():
    assert context_norm(torch.randn(0, 5, 2)).shape == (0, 5, 2)
    assert context_norm(torch.randn(0, 5, 2), torch.ones(0, 5, dtype=torch.bool)).shape == (
        0, 5, 2)
    assert context_norm(torch.randn(2, 0, 2)).shape == (2, 0, 2)
