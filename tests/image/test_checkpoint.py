"""Weights files and checkpoints that are corrupt or hostile, file modes, the atomic writer."""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import stat

import pytest
import torch

import n3seq_image.checkpoint as ckpt_mod
from n3seq._files import as_os_error, atomic_write, dir_mode, file_mode, same_file
from n3seq_image import DnCNN
from n3seq_image.checkpoint import (
    check_model_config,
    latest_checkpoint,
    load_checkpoint,
    load_model,
    read_weights,
    save_checkpoint,
    save_weights,
)
from n3seq_image.cli import main
from tests.image._helpers import write_folder

TINY = '{"depth": 3, "features": 4}'


def tree(folder):
    """Every path under ``folder`` with its content (files) — to prove nothing changed."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 2-step DnCNN run with a checkpoint at steps 1 and 2 (copied by each test)."""
    root = tmp_path_factory.mktemp("run")
    data = write_folder(root / "data", count=2, size=32)
    code = main(["train", "--data", str(data), "--out", str(root / "run"), "--model", "dncnn",
                 "--model-config", TINY, "--crop", "24", "--batch-size", "2", "--steps", "2",
                 "--checkpoint-every", "1", "--val-every", "1", "--no-progress"])
    assert code == 0
    return root


def _truncate(path, size=100):
    path.write_bytes(path.read_bytes()[:size])


def _edit_state(path, **changes):
    doc = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "rng_numpy":
            doc["rng"]["numpy"] = value
        else:
            doc[key] = value
    path.write_text(json.dumps(doc))


CORRUPTIONS = {
    "truncated optimizer": (lambda c, r: _truncate(c / "optimizer.safetensors"),
                            "optimizer.safetensors is not a readable safetensors file"),
    "missing optimizer": (lambda c, r: (c / "optimizer.safetensors").unlink(),
                          "optimizer.safetensors missing"),
    "truncated state.json": (lambda c, r: _truncate(c / "state.json"),
                             "state.json is not valid JSON"),
    "state.json a list": (lambda c, r: (c / "state.json").write_text("[1]"),
                          "unknown format"),
    "step not an int": (lambda c, r: _edit_state(c / "state.json", step="x"),
                        "'step' must be an integer"),
    "param_groups not a list": (lambda c, r: _edit_state(c / "state.json", param_groups=3),
                                "'param_groups' must be a list"),
    "param group sizes": (lambda c, r: _edit_state(c / "state.json",
                                                   param_groups=[{"params": [0]}]),
                          "do not fit the optimizer"),
    "log not a list": (lambda c, r: _edit_state(c / "state.json", state={"log": 5}),
                       "'state.log' must be a list"),
    "rng garbage": (lambda c, r: _edit_state(c / "state.json", rng_numpy=[1]),
                    "malformed RNG state"),
    "truncated weights": (lambda c, r: _truncate(c / "model.safetensors"),
                          "not a readable safetensors"),
    "garbage latest.json": (lambda c, r: (r / "latest.json").write_text("garbage{"),
                            "latest.json is not a checkpoint pointer"),
    "latest.json a list": (lambda c, r: (r / "latest.json").write_text("[1, 2]"),
                           "latest.json is not a checkpoint pointer"),
    "latest.json escapes": (lambda c, r: (r / "latest.json").write_text(
        '{"checkpoint": "../../etc"}'), "latest.json is not a checkpoint pointer"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_resume_from_a_corrupt_checkpoint(capsys, tmp_path, trained_run, case):
    run = tmp_path / "run"
    shutil.copytree(trained_run / "run", run)
    corrupt, fragment = CORRUPTIONS[case]
    corrupt(run / "checkpoints" / "step_0000002", run)
    before = tree(run)
    code = main(["train", "--data", str(trained_run / "data"), "--out", str(run), "--model",
                 "dncnn", "--model-config", TINY, "--crop", "24", "--batch-size", "2",
                 "--steps", "3", "--checkpoint-every", "1", "--val-every", "1",
                 "--no-progress", "--resume"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("n3seq-image: error: ")
    assert fragment in err
    assert tree(run) == before  # nothing written, nothing deleted


def test_failed_load_leaves_model_and_optimizer_unchanged(tmp_path):
    torch.manual_seed(0)
    model = DnCNN(1, 1, depth=3, features=4)
    opt = torch.optim.Adam(model.parameters())
    ckpt = save_checkpoint(tmp_path, DnCNN(1, 1, depth=3, features=4), opt, step=1)
    _truncate(ckpt / "optimizer.safetensors")
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(ckpt, model, opt)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_latest_pointer_must_name_a_checkpoint(tmp_path):
    save_checkpoint(tmp_path, DnCNN(1, 1, depth=3, features=4), None, step=1)
    (tmp_path / "latest.json").write_text('{"checkpoint": 5}')
    with pytest.raises(ValueError, match="delete it to resume"):
        latest_checkpoint(tmp_path)
    (tmp_path / "latest.json").unlink()
    assert latest_checkpoint(tmp_path).name == "step_0000001"


def test_everything_written_has_one_mode(trained_run):
    files = [p for p in (trained_run / "run").rglob("*") if p.is_file()]
    folders = [trained_run / "run", *(p for p in (trained_run / "run").rglob("*") if p.is_dir())]
    assert {p.name for p in files} >= {"optimizer.safetensors", "state.json", "latest.json",
                                        "model.safetensors", "log.json"}
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {file_mode()}
    assert {stat.S_IMODE(p.stat().st_mode) for p in folders} == {dir_mode()}


class TestArchitectureChecks:
    @pytest.mark.parametrize(("name", "config", "fragment"), [
        ("dncnn", [1], "must be a JSON object"),
        ("dncnn", {"features": 10**8}, "out of range [0, 1024]"),
        ("dncnn", {"depth": -1}, "out of range"),
        ("dncnn", {"depth": 2.5}, "must be an integer"),
        ("dncnn", {"depth": "17"}, "must be an integer"),
        ("dncnn", {"residual": 1}, "must be true or false"),
        ("dncnn", {1: 2}, "unknown dncnn config key(s) ['1']"),
        ("n3net", {"temperature_bias": float("nan")}, "must be a finite number"),
        ("n3net", {"placement": 3}, "must be a string"),
        ("n3net", {"stages": 1000}, "out of range"),
        ("unet", {}, "unknown model 'unet'"),
        (["dncnn"], {}, "unknown model"),
    ])
    def test_refused(self, name, config, fragment):
        with pytest.raises(ValueError, match="src: ") as exc:
            check_model_config(name, config, source="src")
        assert fragment in str(exc.value)

    def test_defaults_accepted(self):
        assert check_model_config("n3net", {}) == {}
        cfg = DnCNN(1, 1, depth=3, features=4).config
        assert check_model_config("dncnn", cfg) == cfg

    def test_a_mismatched_file_is_refused_before_allocating(self, tmp_path, monkeypatch):
        path = tmp_path / "w.safetensors"
        save_weights(path, DnCNN(1, 1, depth=3, features=4))
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(path), "pt") as f:
            meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        big = json.dumps({"depth": 20, "features": 256})  # 12M parameters, not in the file
        save_file(state, str(path), metadata={**meta, "config": big})
        devices = []
        original = DnCNN.__init__

        @functools.wraps(original)
        def spy(self, *args, **kwargs):
            devices.append(torch.empty(()).device.type)
            original(self, *args, **kwargs)

        monkeypatch.setattr(DnCNN, "__init__", spy)
        with pytest.raises(ValueError, match="shape mismatches"):
            load_model(path)
        assert devices == ["meta"]

    def test_read_weights_checks_the_metadata(self, tmp_path):
        path = tmp_path / "w.safetensors"
        save_weights(path, DnCNN(1, 1, depth=3, features=4))
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(path), "pt") as f:
            meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        save_file(state, str(path), metadata={**meta, "extra": "[1]"})
        with pytest.raises(ValueError, match="'extra' must be a JSON object"):
            read_weights(path)


class TestAtomicWrite:
    def test_os_error_names_the_target(self, tmp_path):
        def full(p):
            p.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")

        with pytest.raises(OSError, match="cannot write .*out.bin.*No space left") as exc:
            atomic_write(tmp_path / "out.bin", full)
        assert exc.value.errno == errno.ENOSPC and ".tmp" not in str(exc.value)
        assert list(tmp_path.iterdir()) == []

    def test_library_io_errors_become_os_errors(self, tmp_path):
        class SafetensorError(Exception):
            pass

        def full(p):
            raise SafetensorError("I/O error: No space left on device (os error 28)")

        with pytest.raises(OSError, match="No space left on device") as exc:
            atomic_write(tmp_path / "w.safetensors", full)
        assert exc.value.errno == errno.ENOSPC
        assert as_os_error(ValueError("other")) is None

    def test_refuses_a_folder_or_a_file_parent(self, tmp_path):
        (tmp_path / "d").mkdir()
        (tmp_path / "f").write_text("x")
        with pytest.raises(IsADirectoryError, match="is a folder"):
            atomic_write(tmp_path / "d", lambda p: p.write_text("y"))
        with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
            atomic_write(tmp_path / "f" / "x.txt", lambda p: p.write_text("y"))
        assert (tmp_path / "f").read_text() == "x"

    def test_checkpoint_on_a_full_disk(self, tmp_path, monkeypatch):
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(ckpt_mod, "save_weights", full)
        with pytest.raises(OSError, match="cannot write checkpoint .*step_0000001: No space"):
            save_checkpoint(tmp_path, DnCNN(1, 1, depth=3, features=4), None, step=1)
        assert list((tmp_path / "checkpoints").iterdir()) == []

    def test_same_file(self, tmp_path):
        a = tmp_path / "a"
        a.write_text("x")
        os.link(a, tmp_path / "b")
        (tmp_path / "c").symlink_to(a)
        assert same_file(a, tmp_path / "b") and same_file(a, tmp_path / "c")
        assert same_file(a, tmp_path / "." / "a")
        assert not same_file(a, tmp_path / "missing")
