import math

import pytest
import torch

from n3seq.audio import SISDRLoss, si_sdr, si_sdr_improvement


def orthogonal_pair(length: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(length, dtype=torch.float64, generator=gen)
    n = torch.randn(length, dtype=torch.float64, generator=gen)
    s, n = s - s.mean(), n - n.mean()
    n = n - (n @ s) / (s @ s) * s  # zero-mean and exactly orthogonal to s
    return s, n


def test_scaled_copy_is_very_large():
    s = torch.randn(2, 1000, dtype=torch.float64)
    assert (si_sdr(3.0 * s, s) > 100).all()


def test_orthogonal_noise_gives_known_value():
    s, n = orthogonal_pair()
    for ratio_db in (-5.0, 0.0, 12.0):
        scaled = n * (s.norm() / n.norm()) * 10 ** (-ratio_db / 20)
        assert si_sdr(s + scaled, s).item() == pytest.approx(ratio_db, abs=1e-6)


def test_scale_invariance():
    est, target = torch.randn(3, 800, dtype=torch.float64), torch.randn(3, 800, dtype=torch.float64)
    ref = si_sdr(est, target)
    torch.testing.assert_close(si_sdr(-7.5 * est, target), ref)
    torch.testing.assert_close(si_sdr(est, 0.01 * target), ref)


def test_shape_batched():
    assert si_sdr(torch.randn(2, 3, 100), torch.randn(2, 3, 100)).shape == (2, 3)


def test_improvement_is_difference():
    s, n = orthogonal_pair()
    noisy = s + n
    perfect = si_sdr_improvement(s, noisy, s)
    assert perfect.item() == pytest.approx(si_sdr(s, s).item() - si_sdr(noisy, s).item())
    assert si_sdr_improvement(noisy, noisy, s).item() == 0.0
    assert math.isfinite(perfect.item())


def test_loss_is_negative_mean():
    est, target = torch.randn(4, 300), torch.randn(4, 300)
    torch.testing.assert_close(SISDRLoss()(est, target), -si_sdr(est, target).mean())


def test_errors():
    with pytest.raises(ValueError, match=r"same shape \(\.\.\., L\)"):
        si_sdr(torch.randn(2, 100), torch.randn(2, 99))
    with pytest.raises(TypeError, match="estimate must be a floating-point"):
        si_sdr(torch.ones(2, 100, dtype=torch.long), torch.randn(2, 100))
    with pytest.raises(ValueError, match="L >= 2"):
        si_sdr(torch.randn(3, 1), torch.randn(3, 1))


def test_gradcheck():
    est = torch.randn(2, 50, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 50, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda e: si_sdr(e, target), (est,))
