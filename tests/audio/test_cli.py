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


@pytest.mark.parametrize("how", ["same", "dot", "symlink", "hardlink"])
def test_same_input_and_output_refused(tmp_path, tiny_weights, capsys, how):
    sf.write(tmp_path / "in.wav", np.zeros(1000), 16000)
    before = (tmp_path / "in.wav").read_bytes()
    out = {"same": tmp_path / "in.wav", "dot": tmp_path / "." / "in.wav",
           "symlink": tmp_path / "link.wav", "hardlink": tmp_path / "hard.wav"}[how]
    if how == "symlink":
        out.symlink_to(tmp_path / "in.wav")
    if how == "hardlink":
        out.hardlink_to(tmp_path / "in.wav")
    assert main(["denoise", str(tmp_path / "in.wav"), str(out),
                 "--model", str(tiny_weights)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("n3seq-audio: error: ") and "is the input file" in err
    assert (tmp_path / "in.wav").read_bytes() == before


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


def _call(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def _hostile(tiny_weights, tmp_path, config):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_weights), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    path = tmp_path / "hostile.safetensors"
    save_file(state, str(path), metadata={**meta, "config": config})
    return path


@pytest.mark.parametrize(("case", "expected", "fragment"), [
    ("missing input", 1, "audio file not found"),
    ("input is a folder", 1, "not a file"),
    ("nan input", 1, "NaN or infinite (first at channel 0, frame 10"),
    ("text input", 1, "cannot read audio file"),
    ("output is a folder", 2, "is a folder"),
    ("output parent is a file", 2, "is a file, not a folder"),
    ("unsupported output", 2, "unsupported output format '.xyz'"),
    ("threads -1", 2, "--threads"),
    ("threads x", 2, "--threads"),
    ("model missing", 1, "weights not found"),
    ("model is text", 1, "cannot read denoiser weights"),
    ("model config list", 1, "must be a JSON object"),
    ("model config huge", 1, "out of range"),
    ("unknown option", 2, "unrecognized arguments"),
])
def test_exception_table(tmp_path, tiny_weights, capsys, case, expected, fragment):
    """Every bad input: the exit code, one line ``n3seq-audio: error: …``, no file written."""
    src, out, extra = tmp_path / "in.wav", tmp_path / "new" / "out.wav", []
    model = tiny_weights
    sf.write(src, 0.1 * np.ones(2000), 16000)
    if case == "missing input":
        src = tmp_path / "nope.wav"
    elif case == "input is a folder":
        src = tmp_path / "folder.wav"
        src.mkdir()
    elif case == "nan input":
        x = np.zeros(2000, np.float32)
        x[10] = np.nan
        src = tmp_path / "nan.wav"
        sf.write(src, x, 16000, subtype="FLOAT")
    elif case == "text input":
        src = tmp_path / "text.wav"
        src.write_text("hello")
    elif case == "output is a folder":
        out = tmp_path / "outdir"
        out.mkdir()
    elif case == "output parent is a file":
        out = tmp_path / "in.wav" / "out.wav"
    elif case == "unsupported output":
        out = tmp_path / "out.xyz"
    elif case.startswith("threads"):
        extra = ["--threads", case.split()[1]]
    elif case == "model missing":
        model = tmp_path / "none.safetensors"
    elif case == "model is text":
        model = tmp_path / "text.safetensors"
        model.write_text("not weights")
    elif case == "model config list":
        model = _hostile(tiny_weights, tmp_path, "[1]")
    elif case == "model config huge":
        model = _hostile(tiny_weights, tmp_path, '{"channels": 100000000}')
    else:
        extra = ["--bogus"]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, err = _call(["denoise", src, out, "--model", model, *extra], capsys)
    assert code == expected, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("n3seq-audio: error: ") and fragment in lines[-1], err
    if expected == 1:
        assert len(lines) == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_full_disk(tmp_path, tiny_weights, capsys, monkeypatch):
    import errno
    from pathlib import Path

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    sf.write(tmp_path / "in.wav", 0.1 * np.ones(2000), 16000)
    monkeypatch.setattr(Path, "write_bytes", full)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, err = _call(["denoise", tmp_path / "in.wav", tmp_path / "new" / "o.wav",
                       "--model", tiny_weights], capsys)
    assert code == 1 and "No space left on device" in err and "o.wav" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("argv", [["--help"], ["denoise", "--help"]])
def test_help_imports_no_torch_and_shows_defaults(argv):
    code = (
        "import sys\n"
        "from n3seq.audio.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    if argv[0] == "denoise":
        assert "(default: 0)" in done.stdout and "--threads" in done.stdout
