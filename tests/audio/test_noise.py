import pytest
import torch

from n3seq.audio import babble_noise, mix_at_snr, pink_noise, si_sdr, white_noise


def test_white_noise_shape():
    assert white_noise((3, 500)).shape == (3, 500)


def test_pink_noise_falls_3db_per_octave():
    x = pink_noise((64, 8192), torch.Generator().manual_seed(0))
    power = torch.fft.rfft(x, dim=-1).abs().square().mean(0)
    low, high = power[64:128].mean(), power[128:256].mean()  # one octave apart
    assert 10 * torch.log10(low / high).item() == pytest.approx(3.0, abs=0.5)
    assert x.pow(2).mean(-1).sqrt().sub(1).abs().max() < 1e-4


def test_babble_unit_rms_and_tiling():
    sources = [torch.randn(300), torch.randn(700)]
    x = babble_noise(sources, 2000, num_talkers=3, generator=torch.Generator().manual_seed(1))
    assert x.shape == (2000,)
    assert x.pow(2).mean().sqrt().item() == pytest.approx(1.0, abs=1e-5)


def test_babble_errors():
    with pytest.raises(ValueError, match="at least one source"):
        babble_noise([], 100)
    with pytest.raises(ValueError, match=r"\(L,\)"):
        babble_noise([torch.randn(2, 100)], 50)


@pytest.mark.parametrize("snr", [0.0, 5.0, 10.0])
def test_mix_at_snr_reaches_target(snr):
    clean, noise = torch.randn(4, 5000, dtype=torch.float64), torch.randn(4, 5000, dtype=torch.float64)
    noisy = mix_at_snr(clean, noise, snr)
    measured = 10 * torch.log10(clean.pow(2).sum(-1) / (noisy - clean).pow(2).sum(-1))
    torch.testing.assert_close(measured, torch.full((4,), snr, dtype=torch.float64))
    assert si_sdr(noisy, clean).shape == (4,)


def test_mix_at_snr_per_item_tensor():
    clean, noise = torch.randn(2, 1000), torch.randn(2, 1000)
    noisy = mix_at_snr(clean, noise, torch.tensor([0.0, 20.0]))
    measured = 10 * torch.log10(clean.pow(2).sum(-1) / (noisy - clean).pow(2).sum(-1))
    torch.testing.assert_close(measured, torch.tensor([0.0, 20.0]), atol=1e-3, rtol=0)


def test_mix_at_snr_shape_error():
    with pytest.raises(ValueError, match="same shape"):
        mix_at_snr(torch.randn(2, 10), torch.randn(2, 11), 0.0)


# --- Bad and unusual inputs (issue 9) -------------------------------------------------------

_NAN = float("nan")

NOISE_CASES = [
    (lambda: white_noise((2, 1.5)), TypeError, r"shape\[1\] must be an int, got float"),
    (lambda: white_noise((2, -1)), ValueError, r"shape\[1\] must be >= 0"),
    (lambda: white_noise("2, 3"), TypeError, "shape must be a non-empty tuple"),
    (lambda: pink_noise(()), TypeError, "shape must be a non-empty tuple"),
    (lambda: pink_noise((2, 100), generator=1), TypeError, "generator must be a torch"),
    (lambda: babble_noise([], 100), ValueError, "at least one source"),
    (lambda: babble_noise([torch.zeros(0)], 100), ValueError, "with L >= 1"),
    (lambda: babble_noise([torch.ones(5, 2)], 100), ValueError, r"sources\[0\] of shape"),
    (lambda: babble_noise([torch.ones(5, dtype=torch.long)], 100), TypeError,
     r"sources\[0\] must be a floating-point"),
    (lambda: babble_noise([torch.tensor([1.0, _NAN])], 100), ValueError,
     r"sources\[0\] contains 1 non-finite"),
    (lambda: babble_noise([torch.ones(5)], 10.5), TypeError, "length must be an int"),
    (lambda: babble_noise([torch.ones(5)], 10, num_talkers=0), ValueError,
     "num_talkers must be >= 1"),
    (lambda: babble_noise([torch.ones(5)], 10, num_talkers=2.0), TypeError,
     "num_talkers must be an int"),
    (lambda: mix_at_snr(torch.ones(2, 10), torch.ones(2, 9), 5.0), ValueError,
     "must have the same shape"),
    (lambda: mix_at_snr(torch.ones(2, 10), torch.ones(2, 10), _NAN), ValueError,
     "snr_db must be finite"),
    (lambda: mix_at_snr(torch.ones(2, 10), torch.ones(2, 10), "5"), TypeError,
     "snr_db must be a real number"),
    (lambda: mix_at_snr(torch.ones(2, 10), torch.ones(2, 10), torch.tensor([1.0, _NAN])),
     ValueError, "snr_db contains 1 non-finite"),
    (lambda: mix_at_snr(torch.ones(2, 10), torch.ones(2, 10), torch.ones(3)), ValueError,
     r"snr_db of shape \(3,\) does not broadcast"),
    (lambda: mix_at_snr(torch.ones(2, 10), torch.ones(2, 10), torch.ones(2, 2)), ValueError,
     "does not broadcast"),
    (lambda: mix_at_snr(torch.tensor([[1.0, _NAN]]), torch.ones(1, 2), 0.0), ValueError,
     r"clean contains 1 non-finite .*value nan"),
    (lambda: mix_at_snr(torch.ones(1, 2), torch.tensor([[1.0, float("inf")]]), 0.0),
     ValueError, r"noise contains 1 non-finite .*value inf"),
    (lambda: mix_at_snr(torch.full((1, 100), 3e38), torch.randn(1, 100), -20.0),
     OverflowError, "the mixture does not fit float32"),
]


@pytest.mark.parametrize(("call", "exc", "match"), NOISE_CASES)
def test_noise_exception_table(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e20, 1e30])
def test_mix_at_snr_is_right_at_extreme_levels(scale):
    # Before: the mean squares under/overflowed: noise silently dropped (1e-30) or NaN (1e20).
    g = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(2, 1000, generator=g), torch.randn(2, 1000, generator=g)
    mix = mix_at_snr(clean * scale, noise * scale, 5.0)
    assert bool(torch.isfinite(mix).all())
    torch.testing.assert_close(mix / scale, mix_at_snr(clean, noise, 5.0), rtol=1e-4,
                               atol=1e-6)


def test_empty_shapes():
    assert white_noise((0, 5)).shape == (0, 5)
    assert pink_noise((3, 0)).shape == (3, 0)
    assert pink_noise((0, 10)).shape == (0, 10)
    assert babble_noise([torch.randn(20)], 0).shape == (0,)
    assert mix_at_snr(torch.ones(0, 10), torch.ones(0, 10), 3.0).shape == (0, 10)
