import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from n3seq.audio.cli import main


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (22050, 2)])
def test_denoise_writes_same_format(tmp_path, tiny_weights, rate, channels, capsys):
    x = 0.1 * np.random.default_rng(0).standard_normal((rate // 2, channels))
    sf.write(tmp_path / "in.wav", x, rate)
    code = main(["denoise", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                 "--model", str(tiny_weights)])
    assert code == 0
    info = sf.info(tmp_path / "out.wav")
    assert (info.samplerate, info.channels, info.frames) == (rate, channels, rate // 2)
    assert "wrote" in capsys.readouterr().out


def test_unreadable_input_fails_without_output(tmp_path, tiny_weights, capsys):
    (tmp_path / "in.wav").write_bytes(b"RIFF????not a wave file")
    code = main(["denoise", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                 "--model", str(tiny_weights)])
    assert code == 1
    assert "cannot read audio file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "tiny.safetensors"]


def test_missing_model(tmp_path, capsys):
    sf.write(tmp_path / "in.wav", np.zeros(1000), 16000)
    code = main(["denoise", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                 "--model", str(tmp_path / "nope.safetensors")])
    assert code == 1 and "weights not found" in capsys.readouterr().err
    assert not (tmp_path / "out.wav").exists()


def test_same_input_and_output_refused(tmp_path, tiny_weights):
    sf.write(tmp_path / "in.wav", np.zeros(1000), 16000)
    assert main(["denoise", str(tmp_path / "in.wav"), str(tmp_path / "in.wav"),
                 "--model", str(tiny_weights)]) == 1


def test_usage_error_exit_code():
    with pytest.raises(SystemExit) as err:
        main(["denoise", "only_one_arg.wav"])
    assert err.value.code == 2


def test_module_entry_point(tmp_path, tiny_weights):
    sf.write(tmp_path / "in.wav", 0.1 * np.ones(4000), 8000)
    result = subprocess.run(
        [sys.executable, "-m", "n3seq.audio.cli", "denoise", str(tmp_path / "in.wav"),
         str(tmp_path / "out.wav"), "--model", str(tiny_weights)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sf.info(tmp_path / "out.wav").frames == 4000
