import pytest
import torch

from n3seq.audio import WienerFilter, estimate_noise_psd, mix_at_snr, si_sdr, wiener_filter

from .conftest import synthetic_speech


def test_shapes():
    assert wiener_filter(torch.randn(2, 5001)).shape == (2, 5001)
    assert wiener_filter(torch.randn(1, 100)).shape == (1, 100)


def test_improves_si_sdr_on_white_noise():
    clean = synthetic_speech(3, 16000)
    noisy = mix_at_snr(clean, torch.randn(3, 16000, generator=torch.Generator().manual_seed(0)),
                       5.0)
    gain = si_sdr(wiener_filter(noisy), clean) - si_sdr(noisy, clean)
    assert (gain > 3).all()


def test_noise_psd_from_quiet_frames():
    power = torch.ones(1, 5, 20)
    power[..., 10:] = 100.0  # loud half
    psd = estimate_noise_psd(power, quantile=0.5)
    assert psd.shape == (1, 5, 1)
    torch.testing.assert_close(psd, torch.ones(1, 5, 1))


def test_module_equals_function():
    x = torch.randn(1, 4000)
    torch.testing.assert_close(WienerFilter(gain_floor=0.2)(x), wiener_filter(x, gain_floor=0.2))


def test_errors():
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        wiener_filter(torch.randn(4000))
    with pytest.raises(ValueError, match="alpha"):
        wiener_filter(torch.randn(1, 4000), alpha=1.0)
    with pytest.raises(ValueError, match="quantile"):
        estimate_noise_psd(torch.ones(1, 3, 4), quantile=0)
