import os

import numpy as np
import pytest
import soundfile as sf
import torch

from n3seq.audio import (
    AudioFileError,
    check_sample_rate,
    denoise,
    denoise_file,
    read_audio,
    write_audio,
)


def test_write_read_round_trip(tmp_path):
    x = 0.5 * torch.rand(2, 3000) - 0.25
    write_audio(tmp_path / "a.wav", x, 22050, subtype="FLOAT")
    y, rate = read_audio(tmp_path / "a.wav")
    assert rate == 22050 and y.shape == (2, 3000) and y.dtype == torch.float32
    torch.testing.assert_close(y, x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]  # no temp files left


def test_write_clips_integer_formats(tmp_path):
    write_audio(tmp_path / "loud.wav", torch.tensor([2.0, -3.0, 0.5]), 8000, subtype="PCM_16")
    y, _ = read_audio(tmp_path / "loud.wav")
    assert y.abs().max() <= 1.0 and y[0, 2].item() == pytest.approx(0.5, abs=1e-4)


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio")
    with pytest.raises(AudioFileError, match="cannot read audio file .*bad.wav"):
        read_audio(bad)
    with pytest.raises(AudioFileError, match="missing.wav"):
        read_audio(tmp_path / "missing.wav")


def test_unsupported_output_extension(tmp_path):
    with pytest.raises(AudioFileError, match=r"unsupported output format '\.xyz'"):
        write_audio(tmp_path / "o.xyz", torch.zeros(10), 8000)


@pytest.mark.parametrize("rate", [16000.0, "16000", True, None])
def test_sample_rate_type_errors(rate):
    with pytest.raises(TypeError, match="sample_rate must be an int"):
        check_sample_rate(rate)


def test_sample_rate_value_error(tiny_model):
    with pytest.raises(ValueError, match="sample_rate must be positive"):
        denoise(torch.randn(1000), 0, tiny_model)
    assert check_sample_rate(np.int64(8000)) == 8000


@pytest.mark.parametrize("shape", [(4000,), (1, 4000), (3, 4000)])
def test_denoise_keeps_shape_and_dtype(tiny_model, shape):
    x = torch.randn(shape, dtype=torch.float64)
    y = denoise(x, 16000, tiny_model)
    assert y.shape == x.shape and y.dtype == x.dtype


def test_channels_are_independent(tiny_model):
    x = torch.randn(2, 4000)
    stereo = denoise(x, 16000, tiny_model)
    torch.testing.assert_close(stereo[1], denoise(x[1], 16000, tiny_model), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(denoise(x, 16000, tiny_model, batch_channels=False), stereo,
                               atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_resampling_path(tiny_model, rate, monkeypatch):
    seen = []
    forward = type(tiny_model).forward
    monkeypatch.setattr(type(tiny_model), "forward",
                        lambda self, w: seen.append(w.shape[-1]) or forward(self, w))
    x = torch.randn(2, rate // 4)  # 0.25 s
    y = denoise(x, rate, tiny_model)
    assert y.shape == x.shape
    assert seen == [4000]  # the model saw 0.25 s at its own 16 kHz


def test_denoise_bad_rank(tiny_model):
    with pytest.raises(ValueError, match=r"\(L,\) or \(C, L\)"):
        denoise(torch.randn(1, 2, 100), 16000, tiny_model)


def test_denoise_file_keeps_format(tmp_path, tiny_model):
    x = 0.1 * np.random.default_rng(0).standard_normal((5000, 2))
    sf.write(tmp_path / "in.wav", x, 11025, subtype="PCM_16")
    info = denoise_file(tmp_path / "in.wav", tmp_path / "out.wav", tiny_model)
    assert info == {"sample_rate": 11025, "channels": 2, "frames": 5000, "resampled": True}
    out = sf.info(tmp_path / "out.wav")
    assert (out.samplerate, out.channels, out.frames, out.subtype) == (11025, 2, 5000, "PCM_16")


def test_denoise_file_no_output_on_failure(tmp_path, tiny_model):
    (tmp_path / "in.wav").write_text("garbage")
    with pytest.raises(AudioFileError):
        denoise_file(tmp_path / "in.wav", tmp_path / "out.wav", tiny_model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_written_file_has_default_permissions(tmp_path):
    write_audio(tmp_path / "p.wav", torch.zeros(100), 8000)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "p.wav").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT", None])
def test_write_refuses_non_finite_samples(tmp_path, bad, subtype):
    x = torch.zeros(2, 100)
    x[1, 37] = bad
    with pytest.raises(AudioFileError, match=r"n\.wav.*NaN or infinite \(first at channel 1, "
                                             r"frame 37"):
        write_audio(tmp_path / "n.wav", x, 8000, subtype=subtype)
    assert list(tmp_path.iterdir()) == []  # a PCM file would hold a full-scale click


def test_read_refuses_non_finite_samples(tmp_path):
    x = np.zeros((50, 2), np.float32)
    x[20, 0] = np.inf
    sf.write(tmp_path / "inf.wav", x, 8000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match=r"inf\.wav.*first at channel 0, frame 20: inf"):
        read_audio(tmp_path / "inf.wav")


def test_missing_file_says_not_found(tmp_path):
    with pytest.raises(AudioFileError, match="audio file not found: .*missing.wav") as exc:
        read_audio(tmp_path / "missing.wav")
    assert "System error" not in str(exc.value)
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(AudioFileError, match="not a file"):
        read_audio(tmp_path / "dir.wav")


def test_full_disk_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError, match=r"cannot write .*o\.wav.*No space left on device"):
        write_audio(tmp_path / "o.wav", torch.zeros(100), 8000)
    assert list(tmp_path.iterdir()) == []


def test_denoise_file_never_overwrites_its_input(tmp_path, tiny_model):
    sf.write(tmp_path / "in.wav", np.zeros(2000), 16000)
    before = (tmp_path / "in.wav").read_bytes()
    os.link(tmp_path / "in.wav", tmp_path / "hard.wav")
    for out in (tmp_path / "in.wav", tmp_path / "." / "in.wav", tmp_path / "hard.wav"):
        with pytest.raises(ValueError, match="is the input file"):
            denoise_file(tmp_path / "in.wav", out, tiny_model)
    assert (tmp_path / "in.wav").read_bytes() == before


def test_denoise_file_checks_the_output_format_first(tmp_path, tiny_model, monkeypatch):
    sf.write(tmp_path / "in.wav", np.zeros(2000), 16000)
    monkeypatch.setattr("n3seq.audio.io.denoise", lambda *a, **k: pytest.fail("denoised"))
    with pytest.raises(AudioFileError, match="unsupported output format"):
        denoise_file(tmp_path / "in.wav", tmp_path / "o.xyz", tiny_model)


def test_write_refuses_integer_samples(tmp_path):
    pcm = torch.tensor([1000, -2000, 32767], dtype=torch.int16)  # would be clipped to ±1
    with pytest.raises(TypeError, match="floating-point"):
        write_audio(tmp_path / "i.wav", pcm, 8000, subtype="PCM_16")
    assert list(tmp_path.iterdir()) == []
