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


# --- Bad and unusual inputs (issue 9) -------------------------------------------------------

WIENER_CASES = [
    ({"n_fft": 1}, ValueError, "n_fft must be >= 2"),
    ({"n_fft": 512.0}, TypeError, "n_fft must be an int, got float"),
    ({"hop_length": 512}, ValueError, "hop_length must be smaller than n_fft=512"),
    ({"hop_length": 0}, ValueError, "hop_length must be >= 1"),
    ({"quantile": 0.0}, ValueError, r"quantile must be in \(0, 1\]"),
    ({"quantile": float("nan")}, ValueError, "quantile must be finite"),
    ({"alpha": 1.0}, ValueError, r"alpha must be in \[0, 1\)"),
    ({"alpha": "0.9"}, TypeError, "alpha must be a real number"),
    ({"gain_floor": -0.1}, ValueError, r"gain_floor must be in \[0, 1\]"),
    ({"gain_floor": 2.0}, ValueError, r"gain_floor must be in \[0, 1\]"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), WIENER_CASES)
def test_wiener_settings_exception_table(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        wiener_filter(torch.randn(1, 1000), **kwargs)
    with pytest.raises(exc, match=match):
        WienerFilter(**kwargs)


@pytest.mark.parametrize(("x", "exc", "match"), [
    (torch.zeros(1, 100, dtype=torch.int16), TypeError, "floating-point"),
    (torch.zeros(100), ValueError, r"waveform must have shape \(B, L\)"),
    (torch.tensor([[0.0, float("nan"), 1.0]]), ValueError,
     r"waveform contains 1 non-finite .*\(first at index \(0, 1\), value nan\)"),
])
def test_wiener_waveform_exception_table(x, exc, match):
    with pytest.raises(exc, match=match):
        wiener_filter(x)


def test_wiener_empty_batch():
    assert wiener_filter(torch.randn(0, 1000)).shape == (0, 1000)


@pytest.mark.parametrize("scale", [1e10, 1e18, 1e19, 1e30, 1e37])
def test_wiener_finite_and_level_equivariant_when_loud(scale):
    # Before: NaN from 1e18 on (|X|² and |X|²/λ overflowed float32).
    x = synthetic_speech(1, 8000)
    x = x / x.abs().max()
    x[:, :1000] = 0  # digital silence: the noise estimate hits its floor
    out = wiener_filter(x * scale)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out / scale, wiener_filter(x / x.pow(2).mean().sqrt()) *
                               x.pow(2).mean().sqrt(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(("power", "exc", "match"), [
    (torch.rand(2, 5), ValueError, r"power must have shape \(B, F, T\)"),
    (torch.rand(1, 5, 0), ValueError, "with T >= 1"),
    (-torch.rand(1, 5, 4), ValueError, "power must be >= 0"),
    (torch.full((1, 5, 4), float("inf")), ValueError, "power contains 20 non-finite"),
    (torch.ones(1, 5, 4, dtype=torch.long), TypeError, "power must be a floating-point"),
])
def test_noise_psd_exception_table(power, exc, match):
    with pytest.raises(exc, match=match):
        estimate_noise_psd(power)
