import pytest
import torch

from n3seq.audio import mixture_batch, si_sdr
from n3seq.audio.training import make_noise, random_crop


def test_mixture_batch_shapes_and_snr_range():
    sources = [torch.randn(5000), torch.randn(800)]
    gen = torch.Generator().manual_seed(0)
    noisy, clean = mixture_batch(sources, 6, 1000, noise_types=("white", "pink"),
                                 snr_range=(3.0, 3.0), generator=gen)
    assert noisy.shape == clean.shape == (6, 1000)
    snr = 10 * torch.log10(clean.pow(2).sum(-1) / (noisy - clean).pow(2).sum(-1))
    keep = clean.abs().sum(-1) > 0
    torch.testing.assert_close(snr[keep], torch.full_like(snr[keep], 3.0), atol=1e-3, rtol=0)
    assert si_sdr(noisy, clean).shape == (6,)


def test_same_generator_same_batch():
    sources = [torch.randn(3000)]
    a = mixture_batch(sources, 2, 500, babble_sources=sources,
                      generator=torch.Generator().manual_seed(5))
    b = mixture_batch(sources, 2, 500, babble_sources=sources,
                      generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)


def test_random_crop_pads_short_signals():
    assert random_crop(torch.ones(10), 25).tolist() == [1.0] * 10 + [0.0] * 15


def test_noise_errors():
    with pytest.raises(ValueError, match="noise kind must be one of"):
        make_noise("brown", 100)
    with pytest.raises(ValueError, match="babble_sources"):
        make_noise("babble", 100)
    with pytest.raises(ValueError, match="clean_sources is empty"):
        mixture_batch([], 2, 100)
