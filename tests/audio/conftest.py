import math

import pytest
import torch

pytest.importorskip("torchaudio")
pytest.importorskip("soundfile")

from n3seq.audio import DenoiserConfig, SpectralDenoiser, save_denoiser

TINY = DenoiserConfig(channels=8, num_blocks=1, k=2, radius=4, embed_dim=8, kernel_size=3)


def synthetic_speech(batch: int, length: int, rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """Harmonic 'voiced' segments with pauses: a stand-in for speech, no espeak-ng needed."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / rate
    out = torch.zeros(batch, length)
    for b in range(batch):
        f0 = 100 + 150 * float(torch.rand((), generator=gen))
        wave = sum(math.exp(-0.3 * h) * torch.sin(2 * math.pi * h * f0 * t) for h in range(1, 8))
        gate = (torch.sin(2 * math.pi * (2 + 2 * float(torch.rand((), generator=gen))) * t) > 0)
        out[b] = wave * gate.float()
    return out


@pytest.fixture
def tiny_model() -> SpectralDenoiser:
    torch.manual_seed(0)
    return SpectralDenoiser(TINY).eval()


@pytest.fixture
def tiny_weights(tmp_path, tiny_model):
    path = tmp_path / "tiny.safetensors"
    save_denoiser(tiny_model, path, {"note": "test"})
    return path
