"""The ``n3seq-image`` CLI and the denoising functions behind it, on small images."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from torch import nn

import n3seq_image.denoise as denoise_mod
from n3seq_image.cli import main
from n3seq_image.data import load_image, save_image
from n3seq_image.demo import run_demo
from n3seq_image.denoise import denoise_tensor, shipped_weights, tile_starts
from tests.image._helpers import smooth_image, tiny_weights, write_folder


@pytest.fixture
def weights(tmp_path):
    return tiny_weights(tmp_path / "tiny.safetensors")


@pytest.fixture
def gray_png(tmp_path):
    path = tmp_path / "gray.png"
    save_image(path, smooth_image(90, 3))
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


class TestDenoiseCommand:
    def test_grayscale(self, capsys, tmp_path, gray_png, weights):
        out = tmp_path / "out.png"
        code, stdout, _ = run(capsys, "denoise", gray_png, out, "--sigma", 25, "--model", weights)
        assert code == 0 and "wrote" in stdout
        assert load_image(out).shape == (90, 90)

    def test_colour_per_channel(self, capsys, tmp_path, weights):
        rgb = np.stack([smooth_image(84, i) for i in range(3)], axis=-1)
        src, out = tmp_path / "rgb.png", tmp_path / "rgb_out.jpg"
        save_image(src, rgb)
        code, _, _ = run(capsys, "denoise", src, out, "--sigma", 25, "--model", weights,
                         "--add-noise", 0)
        assert code == 0
        assert load_image(out, grayscale=False).shape == (84, 84, 3)

    def test_nlmeans_improves_noisy_image(self, capsys, tmp_path, gray_png):
        out = tmp_path / "nl.png"
        code, _, _ = run(capsys, "denoise", gray_png, out, "--sigma", 25, "--model", "nlmeans",
                         "--add-noise", 1)
        assert code == 0
        clean = load_image(gray_png)
        noisy = clean + np.random.default_rng(1).standard_normal(clean.shape) * 25 / 255
        err_noisy = np.mean((noisy - clean) ** 2)
        assert np.mean((load_image(out) - clean) ** 2) < 0.5 * err_noisy

    def test_missing_file(self, capsys, tmp_path):
        out = tmp_path / "out.png"
        code, _, err = run(capsys, "denoise", tmp_path / "nope.png", out, "--sigma", 25)
        assert code == 1 and "not found" in err and "nope.png" in err
        assert not out.exists()

    def test_unreadable_image(self, capsys, tmp_path, weights):
        bad = tmp_path / "bad.png"
        bad.write_text("this is not a png")
        out = tmp_path / "out.png"
        code, _, err = run(capsys, "denoise", bad, out, "--sigma", 25, "--model", weights)
        assert code == 1 and "cannot read image" in err
        assert not out.exists()

    @pytest.mark.parametrize("sigma", ["abc", "-5", "0", "300", "10-20"])
    def test_bad_sigma(self, capsys, tmp_path, gray_png, sigma):
        with pytest.raises(SystemExit) as exc:
            main(["denoise", str(gray_png), str(tmp_path / "o.png"), "--sigma", sigma])
        assert exc.value.code == 2
        assert "sigma" in capsys.readouterr().err

    def test_bad_model_and_format(self, capsys, tmp_path, gray_png):
        code, _, err = run(capsys, "denoise", gray_png, tmp_path / "o.png", "--sigma", 25,
                           "--model", tmp_path / "missing.safetensors")
        assert code == 1 and "neither a shipped model" in err
        code, _, err = run(capsys, "denoise", gray_png, tmp_path / "o.gif", "--sigma", 25)
        assert code == 2 and "unsupported output format" in err

    def test_failure_leaves_no_partial_output(self, capsys, tmp_path, gray_png, monkeypatch):
        def broken(*args, **kwargs):
            def fail(img):
                raise MemoryError("out of memory in the middle")
            return fail

        monkeypatch.setattr(denoise_mod, "get_denoiser", broken)
        out = tmp_path / "new" / "out.png"
        code, _, err = run(capsys, "denoise", gray_png, out, "--sigma", 25)
        assert code == 1 and err.startswith("n3seq-image: error: out of memory")
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert list(tmp_path.iterdir()) == [gray_png]


    def test_shipped_n3net(self, capsys, tmp_path, gray_png):
        try:
            shipped_weights("n3net")
        except FileNotFoundError as exc:
            pytest.fail(f"shipped weights missing: {exc}")
        out = tmp_path / "n3.png"
        code, _, _ = run(capsys, "denoise", gray_png, out, "--sigma", 25, "--add-noise", 2)
        assert code == 0 and load_image(out).shape == (90, 90)
        clean = load_image(gray_png)
        noisy = clean + np.random.default_rng(2).standard_normal(clean.shape) * 25 / 255
        assert np.mean((load_image(out) - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)


class TestTiling:
    def test_tile_starts_cover(self):
        for length in (80, 81, 200, 513):
            starts = tile_starts(length, 96, 16)
            covered = np.zeros(length, bool)
            for s in starts:
                covered[s : s + 96] = True
            assert covered.all() and starts[-1] + 96 == max(length, 96)

    def test_tiled_equals_whole_for_pixelwise_model(self):
        model = nn.Conv2d(1, 1, 1)
        img = np.random.default_rng(0).random((200, 170)).astype(np.float32)
        whole = denoise_tensor(model, img, tile=512)
        tiled = denoise_tensor(model, img, tile=96, overlap=16)
        np.testing.assert_allclose(tiled, whole, atol=1e-6)

    def test_small_images_padded(self):
        model = nn.Identity()
        img = np.random.default_rng(0).random((30, 50)).astype(np.float32)
        np.testing.assert_array_equal(denoise_tensor(model, img), img)

    def test_bad_tile(self):
        with pytest.raises(ValueError, match="tile must be >= 80"):
            denoise_tensor(nn.Identity(), np.zeros((100, 100), np.float32), tile=64)


class TestEvaluateCommand:
    def test_table_and_files(self, capsys, tmp_path, weights):
        data = write_folder(tmp_path / "set", count=2, size=48)
        csv_path, json_path = tmp_path / "r.csv", tmp_path / "r.json"
        code, out, _ = run(capsys, "evaluate", "--model", weights, "--data", data, "--sigma", 25,
                           "--baselines", "nlmeans", "--csv", csv_path, "--json", json_path,
                           "--no-progress")
        assert code == 0
        assert "mean" in out and "tiny" in out and "nlmeans" in out and "img00.png" in out
        assert len(csv_path.read_text().strip().splitlines()) == 1 + 2 * 3 + 3
        result = json.loads(json_path.read_text())
        assert result["sigma"] == 25 and set(result["mean"]) == {"noisy", "tiny", "nlmeans"}

    def test_errors(self, capsys, tmp_path, weights):
        code, _, err = run(capsys, "evaluate", "--model", weights, "--data", tmp_path / "none",
                           "--sigma", 25)
        assert code == 1 and "image folder not found" in err
        code, _, err = run(capsys, "evaluate", "--data", tmp_path, "--sigma", 25,
                           "--baselines", "wiener")
        assert code == 2 and "unknown ['wiener']" in err


class TestTrainCommand:
    def test_train_and_resume(self, capsys, tmp_path):
        data = write_folder(tmp_path / "data", count=2, size=32)
        args = ["train", "--data", data, "--out", tmp_path / "run", "--model", "dncnn",
                "--model-config", '{"depth": 3, "features": 4}', "--crop", 24,
                "--batch-size", 2, "--no-progress", "--checkpoint-every", 1]
        code, out, _ = run(capsys, *args, "--steps", 2)
        assert code == 0 and json.loads(out)["step"] == 2
        code, out, _ = run(capsys, *args, "--steps", 3, "--resume")
        assert code == 0 and json.loads(out)["step"] == 3

    def test_errors(self, capsys, tmp_path):
        code, _, err = run(capsys, "train", "--data", tmp_path / "none", "--out", tmp_path / "r",
                           "--model", "dncnn", "--no-progress")
        assert code == 1 and "image folder not found" in err
        code, _, err = run(capsys, "train", "--data", tmp_path, "--out", tmp_path / "r",
                           "--model-config", "{oops", "--no-progress")
        assert code == 2 and "--model-config is not valid JSON" in err
        with pytest.raises(SystemExit) as exc:
            main(["train", "--data", str(tmp_path), "--out", "r", "--sigma", "-1"])
        assert exc.value.code == 2


def test_demo(tmp_path, weights):
    result = run_demo(tmp_path / "demo", sigma=25, model=str(weights))
    assert result["psnr_noisy"] == pytest.approx(20.17, abs=0.1)
    for name in ("noisy", "denoised", "side_by_side"):
        assert (tmp_path / "demo" / f"{name}.png").is_file()
    assert load_image(tmp_path / "demo" / "side_by_side.png").shape == (512, 3 * 512 + 16)


def test_console_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "n3seq_image.cli", "--help"], capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    for command in ("train", "evaluate", "denoise", "demo"):
        assert command in proc.stdout
