import math

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
    with pytest.raises(ValueError, match="radius must be >= 1"):
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


# --- Bad and unusual inputs (issue 9) -------------------------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import n3seq.audio as na  # noqa: E402


@pytest.fixture
def lively_model(tiny_model) -> SpectralDenoiser:
    """The tiny model with a learned-looking temperature (not the zero-initialised one)."""
    with torch.no_grad():
        for stage in tiny_model.stages:
            if isinstance(stage, NonLocalStage):
                stage.layer.temperature_net[-1].weight.normal_(0, 0.5)
    return tiny_model


CONFIG_CASES = [
    ({"n_fft": 1}, ValueError, "n_fft must be an even number >= 2"),
    ({"n_fft": 511}, ValueError, "n_fft must be an even number"),
    ({"n_fft": 512.0}, TypeError, "n_fft must be an int, got float"),
    ({"n_fft": 1 << 20}, ValueError, "n_fft must be <= 65536"),
    ({"hop_length": 512}, ValueError, "hop_length must be smaller than n_fft=512"),
    ({"hop_length": 0}, ValueError, "hop_length must be >= 1"),
    ({"hop_length": True}, TypeError, "hop_length must be an int, got bool"),
    ({"sample_rate": 0}, ValueError, "sample_rate must be >= 1"),
    ({"sample_rate": 16000.0}, TypeError, "sample_rate must be an int"),
    ({"channels": 0}, ValueError, "channels must be >= 1"),
    ({"channels": 10**8}, ValueError, "channels must be <= 4096"),
    ({"kernel_size": 4}, ValueError, "kernel_size must be odd"),
    ({"kernel_size": "5"}, TypeError, "kernel_size must be an int, got str"),
    ({"num_blocks": -1}, ValueError, "num_blocks must be >= 0"),
    ({"num_blocks": 1.5}, TypeError, "num_blocks must be an int"),
    ({"k": 0}, ValueError, "k must be >= 1"),
    ({"k": 40}, ValueError, "radius=16 gives 2\\*radius=32 candidate frames, fewer than k=40"),
    ({"radius": 0}, ValueError, "radius must be >= 1"),
    ({"radius": 2.0}, TypeError, "radius must be an int"),
    ({"embed_dim": 0}, ValueError, "embed_dim must be >= 1"),
    ({"nonlocal_kind": "global"}, ValueError, "nonlocal_kind must be one of 'n3', 'local'"),
    ({"nonlocal_kind": None}, ValueError, "nonlocal_kind must be one of"),
    ({"channels": 4096, "num_blocks": 64, "kernel_size": 255}, ValueError,
     "parameters .*refusing it"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), CONFIG_CASES)
def test_config_exception_table(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DenoiserConfig(**kwargs)


def test_config_accepts_numpy_integers_and_counts_parameters():
    np = pytest.importorskip("numpy")
    config = DenoiserConfig(n_fft=np.int64(256), hop_length=np.int32(64), channels=8,
                            num_blocks=1, k=2, radius=4, embed_dim=8, kernel_size=3)
    assert type(config.to_dict()["n_fft"]) is int
    for cfg in (config, TINY, DenoiserConfig(radius=None)):
        assert cfg.parameter_count() == count_parameters(SpectralDenoiser(cfg))


def _wave(b=2, length=4000, value=None, where=None):
    x = torch.randn(b, length, generator=torch.Generator().manual_seed(0))
    if value is not None:
        x[where] = value
    return x


FORWARD_CASES = [
    ([0.0] * 100, TypeError, "waveform must be a torch.Tensor, got list"),
    (torch.zeros(1, 100, dtype=torch.int16), TypeError, "floating-point"),
    (torch.zeros(3, 0), ValueError, "at least one sample"),
    (_wave(value=float("nan"), where=(1, 100)), ValueError,
     r"waveform contains 1 non-finite \(NaN/Inf\) value\(s\) at samples \(b, t\) \(first at "
     r"index \(1, 100\), value nan\)"),
    (_wave(value=float("inf"), where=(0, 3999)), ValueError,
     r"\(first at index \(0, 3999\), value inf\)"),
    (_wave(value=-float("inf"), where=(0, 0)), ValueError, r"value -inf\)"),
]


@pytest.mark.parametrize(("x", "exc", "match"), FORWARD_CASES)
def test_forward_exception_table(tiny_model, x, exc, match):
    with pytest.raises(exc, match=match):
        tiny_model(x)


def test_nan_names_the_waveform_not_an_internal_tensor(tiny_model):
    # Before: "query contains 2016 NaN/Inf value(s) (first at index (0, 0, 0), value nan)".
    with pytest.raises(ValueError) as info:
        tiny_model(_wave(value=float("nan"), where=(1, 100)))
    assert str(info.value).startswith("waveform contains") and "query" not in str(info.value)


def test_empty_batch_gives_empty_output(tiny_model):
    x = torch.randn(0, 4000, requires_grad=True)
    out = tiny_model(x)
    assert out.shape == (0, 4000)
    out.sum().backward()
    with torch.no_grad():
        assert tiny_model(torch.randn(0, 10, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("rate", [16000, 22050])
@pytest.mark.parametrize("batch_channels", [True, False])
def test_denoise_of_no_channels_is_empty(tiny_model, rate, batch_channels):
    out = na.denoise(torch.randn(0, 4000), rate, model=tiny_model,
                     batch_channels=batch_channels)
    assert out.shape == (0, 4000)


@pytest.mark.parametrize("rate", [16000, 22050])
def test_denoise_names_the_bad_sample_before_resampling(tiny_model, rate):
    x = torch.randn(4000)
    x[123] = float("inf")
    with pytest.raises(ValueError, match=r"waveform contains 1 non-finite .*index \(123,\), "
                                         r"value inf"):
        na.denoise(x, rate, model=tiny_model)


@given(st.floats(-30, 30))
def test_finite_in_finite_out_over_extreme_scales(exponent):
    # Before: audio.denoise(x * 1e19) gave NaN (the level's mean square overflowed).
    torch.manual_seed(0)
    model = SpectralDenoiser(TINY).eval()
    x = synthetic_speech(1, 3000) + 0.1 * torch.randn(1, 3000, generator=torch.Generator()
                                                       .manual_seed(1))
    with torch.no_grad():
        out = model(x * 10.0 ** exponent)
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("scale", [1e-38, 1e19, 1e30, 3e37])
def test_denoise_finite_and_level_equivariant(lively_model, scale):
    x = synthetic_speech(1, 4000) + 0.1 * torch.randn(1, 4000, generator=torch.Generator()
                                                       .manual_seed(2))
    x = x / x.abs().max()
    with torch.no_grad():
        ref = lively_model(x)
        out = na.denoise(x * scale, 16000, model=lively_model)
    assert bool(torch.isfinite(out).all())
    if scale >= 1e19:  # the model is level-free: same output, in units of the input level
        torch.testing.assert_close(out / scale, ref, rtol=1e-3, atol=1e-4)


def test_float64_beyond_float32_range(tiny_model):
    x = _wave(1).double()
    with torch.no_grad():
        want = tiny_model(x)
        got = tiny_model(x * 1e200)
    assert got.dtype == torch.float64 and bool(torch.isfinite(got).all())
    torch.testing.assert_close(got / 1e200, want, rtol=1e-4, atol=1e-5)


def test_output_that_does_not_fit_the_dtype_is_an_overflow_error(tiny_model):
    # A low-pass mask makes a square wave ring ~18 % above its peak (Gibbs): at 3e38 the
    # denoised audio does not fit float32.
    with torch.no_grad():
        tiny_model.decoder.weight.zero_()
        tiny_model.decoder.bias.copy_(torch.where(
            torch.arange(tiny_model.decoder.bias.numel()) < 20, 30.0, -30.0))
        square = torch.sign(torch.sin(torch.arange(8000) * 2 * math.pi / 400))[None]
        assert bool(torch.isfinite(tiny_model(square * 1e30)).all())
        with pytest.raises(OverflowError, match="does not fit float32 although the waveform"):
            tiny_model(square * 3e38)


def test_model_config_type_and_later_changes_are_checked():
    with pytest.raises(TypeError, match="config must be a DenoiserConfig or None, got dict"):
        SpectralDenoiser({"n_fft": 512})
    config = DenoiserConfig()
    config.n_fft = 1  # a dataclass field changed after construction
    with pytest.raises(ValueError, match="n_fft must be an even number"):
        SpectralDenoiser(config)


def test_old_local_stage_name_warns_and_gives_the_renamed_class():
    import n3seq.audio.model as audio_model

    with pytest.warns(DeprecationWarning, match="renamed LocalConvStage"):
        assert audio_model.LocalStage is audio_model.LocalConvStage
