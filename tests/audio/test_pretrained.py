import pytest
import torch

from n3seq.audio import DEFAULT_WEIGHTS, load_denoiser, save_denoiser
from n3seq.audio.pretrained import denoiser_info


def test_round_trip(tiny_weights, tiny_model):
    loaded = load_denoiser(tiny_weights)
    assert loaded.config == tiny_model.config and not loaded.training
    x = torch.randn(1, 3000)
    torch.testing.assert_close(loaded(x), tiny_model(x))
    assert denoiser_info(tiny_weights) == {"note": "test"}


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights not found"):
        load_denoiser(tmp_path / "none.safetensors")


def test_not_a_denoiser(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="cannot read denoiser weights"):
        load_denoiser(bad)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not an n3seq.audio denoiser"):
        load_denoiser(other)


def test_save_is_atomic(tmp_path, tiny_model, monkeypatch):
    target = tmp_path / "m.safetensors"
    save_denoiser(tiny_model, target)
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("n3seq.audio.pretrained.save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_denoiser(tiny_model, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_shipped_model_loads_and_runs():
    assert DEFAULT_WEIGHTS.is_file(), f"shipped weights missing: {DEFAULT_WEIGHTS}"
    assert DEFAULT_WEIGHTS.stat().st_size < 3 * 2**20
    model = load_denoiser()
    assert model.sample_rate == 16000 and model.config.nonlocal_kind == "n3"
    assert model(torch.randn(1, 8000)).shape == (1, 8000)
