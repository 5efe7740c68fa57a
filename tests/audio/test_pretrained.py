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


def _with_config(tiny_weights, tmp_path, config):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_weights), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path), metadata={**meta, "config": config})
    return path


@pytest.mark.parametrize(("change", "message"), [
    ("[1]", "must be a JSON object"),
    ("{oops", "is not valid JSON"),
    ({"channels": 10**8}, "'channels' = 100000000 is out of range [1, 1024]"),
    ({"num_blocks": 10**6}, "'num_blocks' = 1000000 is out of range"),
    ({"num_blocks": 0}, "'num_blocks' = 0 is out of range"),
    ({"k": 2.0}, "'k' must be an integer"),
    ({"k": True}, "'k' must be an integer"),
    ({"nonlocal_kind": 3}, "'nonlocal_kind' must be a string"),
    ({"nonlocal_kind": "evil"}, "nonlocal_kind must be one of"),
    ({"kernel_size": 4}, "kernel_size must be odd"),
    ({"evil": 1}, "unknown denoiser config key(s) ['evil']"),
    ({"channels": 16}, "tensors do not match the config"),
    ({"n_fft": 1}, "n_fft must be an even number >= 2"),
])
def test_hostile_config_refused(tiny_weights, tiny_model, tmp_path, change, message):
    import json

    config = change if isinstance(change, str) else json.dumps(
        {**tiny_model.config.to_dict(), **change})
    path = _with_config(tiny_weights, tmp_path, config)
    with pytest.raises(ValueError, match="bad.safetensors") as exc:
        load_denoiser(path)
    assert message in str(exc.value)


def test_saved_file_has_the_usual_mode(tmp_path, tiny_model):
    import stat

    from n3seq._files import file_mode

    save_denoiser(tiny_model, tmp_path / "m.safetensors")
    assert stat.S_IMODE((tmp_path / "m.safetensors").stat().st_mode) == file_mode()


def test_truncated_weights(tiny_weights, tmp_path):
    bad = tmp_path / "t.safetensors"
    bad.write_bytes(tiny_weights.read_bytes()[:-100])
    with pytest.raises(ValueError, match="cannot read denoiser weights"):
        load_denoiser(bad)
