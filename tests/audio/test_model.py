import pytest
import torch
import torchaudio
from torch import nn

from n3seq import N3Block
from n3seq.audio import (
    DenoiserConfig,
    LocalMixer,
    SpectralDenoiser,
    count_parameters,
    matched_hidden,
    mixture_batch,
    train_denoiser,
)
from n3seq.audio.model import NonLocalStage

from .conftest import TINY, synthetic_speech


@pytest.mark.parametrize("length", [1, 100, 1000, 4000, 5003])
def test_output_has_input_length(tiny_model, length):
    assert tiny_model(torch.randn(2, length)).shape == (2, length)


def test_default_model_shape_and_dtype():
    model = SpectralDenoiser()
    y = model(torch.randn(1, 9000, dtype=torch.float64))
    assert y.shape == (1, 9000) and y.dtype == torch.float64


def test_mask_shape_and_range(tiny_model):
    spec = tiny_model.stft(torch.randn(3, 4000))
    mask = tiny_model.mask(spec)
    assert mask.shape == spec.shape == (3, TINY.freq_bins, 4000 // TINY.hop_length + 1)
    assert mask.min() >= 0 and mask.max() <= 1


def test_stft_round_trip_length():
    stft = torchaudio.transforms.Spectrogram(n_fft=512, hop_length=128, power=None)
    istft = torchaudio.transforms.InverseSpectrogram(n_fft=512, hop_length=128)
    for length in (4000, 4001, 4127):
        x = torch.randn(2, length, dtype=torch.float64)
        torch.testing.assert_close(istft(stft(x), length=length), x)


def test_unit_mask_is_identity(tiny_model):
    nn.init.zeros_(tiny_model.decoder.weight)
    nn.init.constant_(tiny_model.decoder.bias, 40.0)  # sigmoid(40) == 1 in float32
    x = torch.randn(2, 3333)
    torch.testing.assert_close(tiny_model(x), x, atol=1e-5, rtol=1e-4)


def test_level_invariance(tiny_model):
    x = torch.randn(1, 4000)
    torch.testing.assert_close(tiny_model(0.01 * x), 0.01 * tiny_model(x), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("shape", [(4000,), (1, 2, 4000)])
def test_bad_rank_names_layout(tiny_model, shape):
    with pytest.raises(ValueError, match=r"waveform must have shape \(B, L\)"):
        tiny_model(torch.randn(shape))


def test_integer_input_rejected(tiny_model):
    with pytest.raises(TypeError, match="floating-point"):
        tiny_model(torch.zeros(1, 4000, dtype=torch.int16))


def test_config_validation():
    with pytest.raises(ValueError, match="nonlocal_kind"):
        DenoiserConfig(nonlocal_kind="global")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        DenoiserConfig(kernel_size=4)
    with pytest.raises(ValueError, match="radius must be a positive int"):
        DenoiserConfig(radius=0)


def test_local_mixer_shape():
    mixer = LocalMixer(dim=6, k=3, hidden=5, kernel_size=3)
    assert mixer(torch.randn(2, 20, 6)).shape == (2, 20, 24)


@pytest.mark.parametrize("config", [DenoiserConfig(), TINY])
def test_equal_parameter_count(config):
    """The local variant replaces each N³ block by a mixer with (nearly) the same size."""
    n3 = SpectralDenoiser(DenoiserConfig(**{**config.to_dict(), "nonlocal_kind": "n3"}))
    local = SpectralDenoiser(DenoiserConfig(**{**config.to_dict(), "nonlocal_kind": "local"}))
    n3_layers = [m.layer for m in n3.modules() if isinstance(m, NonLocalStage)]
    local_layers = [m.layer for m in local.modules() if isinstance(m, NonLocalStage)]
    assert all(isinstance(m, N3Block) for m in n3_layers)
    assert all(isinstance(m, LocalMixer) for m in local_layers)
    per_hidden = config.channels * (config.kernel_size + 1 + config.k) + 1
    for a, b in zip(n3_layers, local_layers):
        assert abs(count_parameters(a) - count_parameters(b)) <= per_hidden / 2
    total_n3, total_local = count_parameters(n3), count_parameters(local)
    assert abs(total_n3 - total_local) / total_n3 < 0.01


def test_matched_hidden_closest():
    target = count_parameters(N3Block(64, 4, embed_dim=32, radius=16))
    h = matched_hidden(64, 4, target, 5)
    sizes = {d: count_parameters(LocalMixer(64, 4, h + d, 5)) for d in (-1, 0, 1)}
    assert min(sizes, key=lambda d: abs(sizes[d] - target)) == 0


def test_gradients_reach_n3_embedding(tiny_model):
    tiny_model(torch.randn(2, 4000)).pow(2).mean().backward()
    block = next(m for m in tiny_model.modules() if isinstance(m, N3Block))
    assert block.embedding[0].weight.grad.abs().sum() > 0


def test_short_training_lowers_loss():
    torch.manual_seed(0)
    model = SpectralDenoiser(TINY)
    sources = list(synthetic_speech(6, 12000))

    def batch_fn(step):
        gen = torch.Generator().manual_seed(step)
        return mixture_batch(sources, 4, 4000, noise_types=("white", "pink"), generator=gen)

    log = train_denoiser(model, batch_fn, steps=40, lr=5e-3, progress=False, log_every=10)
    assert len(log) == 4 and log[-1]["step"] == 40
    assert log[-1]["loss"] < log[0]["loss"] - 0.5
    assert not model.training


def test_global_search_variant():
    config = DenoiserConfig(**{**TINY.to_dict(), "radius": None})
    model = SpectralDenoiser(config)
    block = next(m for m in model.modules() if isinstance(m, N3Block))
    assert block.radius is None
    assert model(torch.randn(2, 1500)).shape == (2, 1500)
