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
