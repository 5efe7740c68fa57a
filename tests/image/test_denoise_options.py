"""``denoise`` options of issue 11: --precision, the tile progress bar, --add-noise PSNRs,
--save-noisy, and denoising without --sigma (estimated σ, the blind N3Net)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import n3seq_image.denoise as denoise_mod
import n3seq_image.precision as precision_mod
from n3seq_image import N3Net
from n3seq_image.checkpoint import load_model, save_weights
from n3seq_image.cli import main
from n3seq_image.data import add_noise, load_image, quantize_8bit, save_image
from n3seq_image.denoise import denoise_file, denoise_file_report, denoise_tensor, get_denoiser
from n3seq_image.metrics import psnr
from tests.image._helpers import smooth_image, tiny_weights


@pytest.fixture
def weights(tmp_path):
    return tiny_weights(tmp_path / "tiny.safetensors")


@pytest.fixture
def identity(tmp_path):
    """A DnCNN whose zero tail makes it the identity: its output is its input."""
    from n3seq_image import DnCNN
    from n3seq_image.train import zero_init_tails

    torch.manual_seed(0)
    net = DnCNN(1, 1, depth=3, features=4)
    zero_init_tails(net)
    save_weights(tmp_path / "identity.safetensors", net, extra={"sigma": "25"})
    return tmp_path / "identity.safetensors"


@pytest.fixture
def gray_png(tmp_path):
    path = tmp_path / "gray.png"
    save_image(path, smooth_image(90, 3))
    return path


def call(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def one_line_error(err, code, expected, fragment):
    assert code == expected, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("n3seq-image: error: "), err
    assert fragment in err.strip().splitlines()[-1], err


def tiny_n3net():
    torch.manual_seed(0)
    return N3Net(features=4, embed_features=4, depth=3, stage_channels=2).eval()


def noisy_image(size=96, sigma=25.0, seed=0):
    return add_noise(smooth_image(size, 1), sigma, seed)


# --------------------------------------------------------------------------- precision


class TestPrecision:
    @pytest.mark.parametrize("make", ["dncnn", "n3net"])
    def test_auto_is_float32_where_bf16_unsupported(self, monkeypatch, weights, make):
        model = load_model(weights) if make == "dncnn" else tiny_n3net()
        img = noisy_image()
        monkeypatch.setattr(precision_mod, "bf16_supported", lambda device: False)
        auto = denoise_tensor(model, img, precision="auto")
        assert np.array_equal(auto, denoise_tensor(model, img, precision="float32"))

    @pytest.mark.parametrize("make", ["dncnn", "n3net"])
    def test_bfloat16_runs_close_to_float32(self, monkeypatch, weights, make):
        model = load_model(weights) if make == "dncnn" else tiny_n3net()
        img = noisy_image()
        ref = denoise_tensor(model, img, precision="float32")
        bf16 = denoise_tensor(model, img, precision="bfloat16")
        assert bf16.dtype == np.float32 and bf16.shape == img.shape
        assert not np.array_equal(bf16, ref)  # the convolutions did run in bfloat16
        # bfloat16 keeps 8 mantissa bits: untrained tiny nets (output spread ~0.3-0.6) agree
        # to ~1e-2 at worst, ~4e-3 on average
        assert np.abs(bf16 - ref).max() < 0.06 and np.abs(bf16 - ref).mean() < 0.01
        assert psnr(np.clip(bf16, 0, 1), np.clip(ref, 0, 1)) > 40
        monkeypatch.setattr(precision_mod, "bf16_supported", lambda device: True)
        assert np.array_equal(denoise_tensor(model, img, precision="auto"), bf16)

    def test_get_denoiser_default_is_auto(self, monkeypatch, weights):
        img = noisy_image()
        monkeypatch.setattr(precision_mod, "bf16_supported", lambda device: True)
        default = get_denoiser(str(weights), 25)(img)
        assert np.array_equal(default, get_denoiser(str(weights), 25, precision="bfloat16")(img))
        monkeypatch.setattr(precision_mod, "bf16_supported", lambda device: False)
        default = get_denoiser(str(weights), 25)(img)
        assert np.array_equal(default, get_denoiser(str(weights), 25, precision="float32")(img))
        assert default.dtype == np.float32

    def test_denoise_tensor_default_stays_float32(self, monkeypatch, weights):
        """The raw function (also upscale's) keeps float32 unless asked."""
        model, img = load_model(weights), noisy_image()
        monkeypatch.setattr(precision_mod, "bf16_supported", lambda device: True)
        assert np.array_equal(denoise_tensor(model, img),
                              denoise_tensor(model, img, precision="float32"))

    @pytest.mark.parametrize("bad", ["fp16", "float16", "", None, "AUTO"])
    def test_bad_precision_named(self, weights, gray_png, tmp_path, bad):
        with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16"):
            denoise_tensor(load_model(weights), noisy_image(), precision=bad)
        with pytest.raises(ValueError, match="precision must be one of"):
            get_denoiser(str(weights), 25, precision=bad)
        with pytest.raises(ValueError, match="precision must be one of"):
            denoise_file(gray_png, tmp_path / "o.png", 25, model=str(weights), precision=bad)
        assert not (tmp_path / "o.png").exists()

    @pytest.mark.parametrize("choice", ["auto", "float32", "bfloat16"])
    def test_cli_plumbs_precision(self, capsys, monkeypatch, tmp_path, gray_png, weights,
                                  choice):
        seen = []
        real = denoise_mod.autocast

        def spy(precision, device):
            seen.append(precision)
            return real(precision, device)

        monkeypatch.setattr(denoise_mod, "autocast", spy)
        argv = ["denoise", gray_png, tmp_path / "o.png", "--sigma", 25, "--model", weights]
        code, _, err = call(capsys, *argv, *(["--precision", choice] if choice != "auto" else []))
        assert code == 0, err
        assert seen == [choice]

    def test_cli_bad_precision(self, capsys, tmp_path, gray_png):
        code, _, err = call(capsys, "denoise", gray_png, tmp_path / "o.png", "--sigma", 25,
                            "--precision", "fp16")
        one_line_error(err, code, 2, "--precision")
        assert not (tmp_path / "o.png").exists()


# --------------------------------------------------------------------------- progress


class TestProgress:
    def test_bar_per_tile_and_same_result(self, capsys, weights):
        model = load_model(weights)
        img = np.random.default_rng(0).random((200, 170)).astype(np.float32)
        quiet = denoise_tensor(model, img, tile=96, overlap=16, progress=False)
        assert "tiles" not in capsys.readouterr().err
        shown = denoise_tensor(model, img, tile=96, overlap=16, progress=True)
        err = capsys.readouterr().err
        assert "tiles" in err and "0/6" in err  # 3 rows x 2 columns of tiles
        assert np.array_equal(shown, quiet)

    def test_no_bar_for_an_image_in_one_piece(self, capsys, weights):
        denoise_tensor(load_model(weights), noisy_image(), tile=512, progress=True)
        assert "tiles" not in capsys.readouterr().err

    def test_cli_shows_bar_unless_no_progress(self, capsys, tmp_path, weights):
        src = tmp_path / "big.png"
        save_image(src, smooth_image(200, 0))
        code, out, err = call(capsys, "denoise", src, tmp_path / "a.png", "--sigma", 25,
                              "--model", weights, "--tile", 96, "--overlap", 16)
        assert code == 0 and "tiles" in err and "0/9" in err
        assert "tiles" not in out  # stdout stays clean
        code, _, err = call(capsys, "denoise", src, tmp_path / "b.png", "--sigma", 25,
                            "--model", weights, "--tile", 96, "--overlap", 16, "--no-progress")
        assert code == 0 and "tiles" not in err
        assert np.array_equal(load_image(tmp_path / "a.png"), load_image(tmp_path / "b.png"))


# --------------------------------------------------------------------------- --add-noise


class TestAddNoise:
    def test_prints_noisy_and_denoised_psnr(self, capsys, tmp_path, gray_png, identity):
        code, out, err = call(capsys, "denoise", gray_png, tmp_path / "o.png", "--sigma", 30,
                              "--add-noise", 4, "--model", identity, "--precision", "float32")
        assert code == 0, err
        clean = load_image(gray_png)
        noisy = add_noise(clean, 30, 4)
        expected_noisy = psnr(noisy, clean)
        expected_denoised = psnr(np.clip(noisy, 0, 1), clean)  # the identity, clipped
        assert expected_denoised > expected_noisy + 0.01
        lines = out.splitlines()
        assert lines[0].startswith("noisy    PSNR") and f"{expected_noisy:.2f} dB" in lines[0]
        assert "sigma=30" in lines[0] and "seed 4" in lines[0]
        assert lines[1].startswith("denoised PSNR")
        assert f"{expected_denoised:.2f} dB" in lines[1]
        assert lines[2] == f"wrote {tmp_path / 'o.png'}"

    def test_report_fields(self, tmp_path, gray_png, identity):
        result = denoise_file_report(gray_png, tmp_path / "o.png", 30, model=str(identity),
                                     add_noise_seed=4, precision="float32")
        clean = load_image(gray_png)
        assert np.array_equal(result.noisy, add_noise(clean, 30, 4))
        assert result.psnr_noisy == pytest.approx(psnr(result.noisy, clean))
        assert result.psnr_denoised == pytest.approx(psnr(result.denoised, clean))
        assert result.sigma == 30 and not result.sigma_estimated
        assert result.outputs == (str(tmp_path / "o.png"),)

    def test_no_psnr_without_add_noise(self, capsys, tmp_path, gray_png, weights):
        code, out, _ = call(capsys, "denoise", gray_png, tmp_path / "o.png", "--sigma", 25,
                            "--model", weights)
        assert code == 0 and "PSNR" not in out

    def test_add_noise_needs_sigma(self, capsys, tmp_path, gray_png, weights):
        code, _, err = call(capsys, "denoise", gray_png, tmp_path / "o.png", "--add-noise", 1,
                            "--model", weights)
        one_line_error(err, code, 2, "--add-noise needs --sigma")
        assert listing(tmp_path) == ["gray.png", "tiny.safetensors"]
        with pytest.raises(ValueError, match="add_noise_seed needs sigma"):
            denoise_file(gray_png, tmp_path / "o.png", None, model=str(weights),
                         add_noise_seed=1)


class TestSaveNoisy:
    def test_writes_the_noisy_input_8_bit(self, capsys, tmp_path, gray_png, weights):
        code, out, err = call(capsys, "denoise", gray_png, tmp_path / "o.png", "--sigma", 40,
                              "--add-noise", 2, "--model", weights, "--save-noisy",
                              tmp_path / "n" / "noisy.png")
        assert code == 0, err
        assert f"wrote {tmp_path / 'n' / 'noisy.png'}" in out
        with Image.open(tmp_path / "n" / "noisy.png") as img:
            assert img.mode == "L"
            saved = np.asarray(img)
        expected = quantize_8bit(add_noise(load_image(gray_png), 40, 2))
        assert np.array_equal(saved, np.round(expected * 255).astype(np.uint8))
        assert saved.min() == 0 and saved.max() == 255  # σ = 40: clipped at both ends

    def test_16_bit_input_gives_8_bit_noisy_and_16_bit_output(self, tmp_path, identity):
        src = tmp_path / "i16.png"
        save_image(src, smooth_image(90, 2), depth=16)
        denoise_file(src, tmp_path / "o.png", 25, model=str(identity), add_noise_seed=0,
                     save_noisy=tmp_path / "noisy.png")
        with Image.open(tmp_path / "noisy.png") as img:
            assert img.mode == "L"
        with Image.open(tmp_path / "o.png") as img:
            assert img.mode.startswith("I;16")

    def test_alpha_copied_to_the_noisy_file(self, tmp_path, identity):
        rgba = np.zeros((90, 90, 4), np.uint8)
        rgba[..., :3] = np.round(np.stack([smooth_image(90, i) for i in range(3)], -1) * 255)
        rgba[..., 3] = np.arange(90, dtype=np.uint8)[None, :]
        Image.fromarray(rgba).save(tmp_path / "a.png")
        denoise_file(tmp_path / "a.png", tmp_path / "o.png", 25, model=str(identity),
                     add_noise_seed=0, save_noisy=tmp_path / "noisy.png")
        with Image.open(tmp_path / "noisy.png") as img:
            assert img.mode == "RGBA"
            assert np.array_equal(np.asarray(img)[..., 3], rgba[..., 3])

    @pytest.mark.parametrize(("noisy", "extra", "code", "fragment"), [
        ("o.png", [], 2, "name the same file"),
        ("./sub/../o.png", [], 2, "name the same file"),
        ("gray.png", [], 2, "is the input file"),
        ("folder", [], 2, "is a folder"),
        ("gray.png/x.png", [], 2, "is a file, not a folder"),
        ("n.gif", [], 2, "unsupported output format '.gif'"),
        ("/dev/null", [], 2, "not a regular file"),
        ("n.png", ["NO-ADD-NOISE"], 2, "--save-noisy writes the noisy image"),
    ])
    def test_refused_before_any_work(self, capsys, tmp_path, gray_png, weights, monkeypatch,
                                     noisy, extra, code, fragment):
        monkeypatch.chdir(tmp_path)
        (tmp_path / "folder").mkdir()
        (tmp_path / "sub").mkdir()
        files = listing(tmp_path)
        add = [] if "NO-ADD-NOISE" in extra else ["--add-noise", 0]
        got, _, err = call(capsys, "denoise", "gray.png", "o.png", "--sigma", 25, *add,
                           "--model", weights, "--save-noisy", noisy)
        one_line_error(err, got, code, fragment)
        assert listing(tmp_path) == files

    def test_alpha_to_jpeg_refused(self, capsys, tmp_path, identity):
        Image.new("RGBA", (90, 90), (10, 20, 30, 40)).save(tmp_path / "a.png")
        files = listing(tmp_path)
        code, _, err = call(capsys, "denoise", tmp_path / "a.png", tmp_path / "o.png",
                            "--sigma", 25, "--add-noise", 0, "--model", identity,
                            "--save-noisy", tmp_path / "n.jpg")
        one_line_error(err, code, 1, "cannot store the alpha")
        assert listing(tmp_path) == files

    def test_failed_output_write_removes_the_noisy_file(self, capsys, tmp_path, gray_png,
                                                        weights, monkeypatch):
        import errno

        real = denoise_mod.save_image

        def fail_second(path, *args, **kwargs):
            if str(path).endswith("o.png"):
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(denoise_mod, "save_image", fail_second)
        files = listing(tmp_path)
        code, _, err = call(capsys, "denoise", gray_png, tmp_path / "new" / "o.png",
                            "--sigma", 25, "--add-noise", 0, "--model", weights,
                            "--save-noisy", tmp_path / "new2" / "n.png")
        one_line_error(err, code, 1, "No space left on device")
        assert listing(tmp_path) == files  # neither file nor the folders made for them


# --------------------------------------------------------------------------- blind


@pytest.fixture
def weights_dir(tmp_path, monkeypatch, weights):
    """A stand-in for the package's weights folder: tiny σ = 25 'n3net', no blind model."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(weights, folder / denoise_mod.SHIPPED["n3net"])
    monkeypatch.setattr(denoise_mod, "WEIGHTS_DIR", folder)
    return folder


def ship_blind(folder):
    torch.manual_seed(1)
    from n3seq_image import DnCNN

    save_weights(folder / denoise_mod.SHIPPED["n3net-blind"], DnCNN(1, 1, depth=3, features=4),
                 extra={"sigma": "0-55"})


@pytest.fixture
def noisy20_png(tmp_path):
    """A 128 px image with σ = 20 noise, stored in 16 bits (so the noise is not quantised)."""
    path = tmp_path / "noisy20.png"
    save_image(path, add_noise(smooth_image(128, 5), 20, seed=7), depth=16)
    return path


def spy_loads(monkeypatch):
    loaded = []
    real = denoise_mod.load_network

    def spy(spec):
        loaded.append(spec)
        return real(spec)

    monkeypatch.setattr(denoise_mod, "load_network", spy)
    return loaded


def estimate_line(err):
    lines = [line for line in err.splitlines() if line.startswith("estimated noise level")]
    assert len(lines) == 1, err
    return float(lines[0].split("sigma = ")[1].split()[0])


class TestWithoutSigma:
    @pytest.mark.parametrize("method", ["nlmeans", "bm3d"])
    def test_classical_use_the_estimate(self, capsys, tmp_path, monkeypatch, noisy20_png,
                                        method):
        if method == "bm3d" and not denoise_mod.bm3d_available():
            pytest.skip("bm3d is not installed")
        used = []
        name = f"{method}_denoiser"
        real = getattr(denoise_mod, name)

        def spy(sigma):
            used.append(sigma)
            return real(sigma)

        monkeypatch.setattr(denoise_mod, name, spy)
        code, out, err = call(capsys, "denoise", noisy20_png, tmp_path / "o.png", "--model",
                              method)
        assert code == 0, err
        estimate = estimate_line(err)
        assert abs(estimate - 20) < 1.5
        assert used == [pytest.approx(estimate, abs=0.005)]
        assert "estimated" not in out and "warning" not in err

    def test_n3net_without_blind_weights_warns_once(self, capsys, tmp_path, monkeypatch,
                                                    weights_dir, noisy20_png):
        loaded = spy_loads(monkeypatch)
        code, _, err = call(capsys, "denoise", noisy20_png, tmp_path / "o.png")
        assert code == 0, err
        estimate = estimate_line(err)
        warnings = [line for line in err.splitlines() if line.startswith("warning")]
        assert len(warnings) == 1, err  # not also "trained at sigma=25, input sigma=…"
        assert "blind N3Net weights are not shipped yet" in warnings[0]
        assert "sigma = 25 model" in warnings[0] and f"{estimate:.2f}" in warnings[0]
        assert loaded == ["n3net"]

    def test_n3net_uses_the_blind_weights_when_shipped(self, capsys, tmp_path, monkeypatch,
                                                       weights_dir, noisy20_png):
        ship_blind(weights_dir)
        loaded = spy_loads(monkeypatch)
        code, _, err = call(capsys, "denoise", noisy20_png, tmp_path / "o.png")
        assert code == 0, err
        assert loaded == ["n3net-blind"] and "warning" not in err
        result = denoise_file_report(noisy20_png, tmp_path / "p.png")
        assert result.model == "n3net-blind" and result.sigma_estimated
        assert abs(result.sigma - 20) < 1.5

    def test_with_sigma_the_sigma25_model_runs(self, capsys, tmp_path, monkeypatch,
                                               weights_dir, noisy20_png):
        ship_blind(weights_dir)
        loaded = spy_loads(monkeypatch)
        code, _, err = call(capsys, "denoise", noisy20_png, tmp_path / "o.png", "--sigma", 25)
        assert code == 0 and loaded == ["n3net"] and "estimated" not in err

    @pytest.mark.parametrize(("sigma", "expected"), [
        (30, "n3net-blind"), (15, "n3net-blind"), (23.5, "n3net-blind"),
        (24, "n3net"), (25.9, "n3net")])
    def test_given_sigma_far_from_25_runs_the_blind_model(self, capsys, tmp_path, monkeypatch,
                                                          weights_dir, noisy20_png, sigma,
                                                          expected):
        ship_blind(weights_dir)
        loaded = spy_loads(monkeypatch)
        code, _, err = call(capsys, "denoise", noisy20_png, tmp_path / "o.png", "--sigma", sigma)
        assert code == 0 and loaded == [expected], err
        assert ("using the blind N3Net for sigma = " in err) is (expected == "n3net-blind"), err
        assert "warning" not in err

    def test_n3net_sigma25_is_the_sigma25_model_at_any_sigma(self, capsys, tmp_path,
                                                             monkeypatch, weights_dir,
                                                             noisy20_png):
        ship_blind(weights_dir)
        loaded = spy_loads(monkeypatch)
        code, _, err = call(capsys, "denoise", noisy20_png, tmp_path / "o.png", "--sigma", 40,
                            "--model", "n3net-sigma25")
        assert code == 0 and loaded == ["n3net-sigma25"], err
        assert "trained at sigma=25, input sigma=40" in err and "blind" not in err

    def test_far_sigma_without_blind_weights_keeps_the_sigma25_model(self, capsys, tmp_path,
                                                                    monkeypatch, weights_dir,
                                                                    noisy20_png):
        loaded = spy_loads(monkeypatch)
        code, _, err = call(capsys, "denoise", noisy20_png, tmp_path / "o.png", "--sigma", 40)
        assert code == 0 and loaded == ["n3net"], err
        assert "trained at sigma=25, input sigma=40" in err

    def test_other_networks_get_the_sigma_warning(self, capsys, tmp_path, weights,
                                                  noisy20_png):
        code, _, err = call(capsys, "denoise", noisy20_png, tmp_path / "o.png", "--model",
                            weights)
        assert code == 0, err
        estimate = estimate_line(err)
        warning = err.split("trained at sigma=25, input sigma=")[1].split()[0]
        assert float(warning) == pytest.approx(estimate, abs=0.005)

    def test_blind_model_missing_is_a_clear_error(self, capsys, tmp_path, weights_dir,
                                                  gray_png):
        code, _, err = call(capsys, "denoise", gray_png, tmp_path / "o.png", "--model",
                            "n3net-blind", "--sigma", 25)
        one_line_error(err, code, 1, "blind N3Net weights are not shipped yet")
        assert not (tmp_path / "o.png").exists()

    def test_image_too_small_to_estimate(self, capsys, tmp_path):
        save_image(tmp_path / "small.png", smooth_image(10, 0))
        code, _, err = call(capsys, "denoise", tmp_path / "small.png", tmp_path / "o.png",
                            "--model", "nlmeans")
        one_line_error(err, code, 1, "too small to estimate its noise level")
        assert "--sigma" in err and not (tmp_path / "o.png").exists()

    def test_colour_estimate_is_the_channel_mean(self, tmp_path):
        rgb = np.stack([add_noise(smooth_image(128, c), 10 + 10 * c, seed=c) for c in range(3)],
                       axis=-1)
        save_image(tmp_path / "rgb.png", rgb)
        result = denoise_file_report(tmp_path / "rgb.png", tmp_path / "o.png", model="nlmeans")
        assert abs(result.sigma - 20) < 1.5  # channels at 10, 20, 30


@pytest.mark.parametrize("shape", [(8, 8), (7, 20), (20, 7), (8, 8, 3)])
def test_bm3d_refuses_images_its_block_does_not_fit(shape):
    # the bm3d package raises below 8 px and kills the process (SIGSEGV) at exactly 8×8
    if not denoise_mod.bm3d_available():
        pytest.skip("bm3d is not installed")
    with pytest.raises(ValueError, match=r"bm3d needs an image larger than 8×8 px"):
        denoise_mod.bm3d_denoiser(25)(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("shape", [(8, 9), (9, 8), (9, 9)])
def test_bm3d_denoises_the_smallest_images_it_handles(shape):
    if not denoise_mod.bm3d_available():
        pytest.skip("bm3d is not installed")
    noisy = np.random.default_rng(0).random(shape).astype(np.float32)
    out = denoise_mod.bm3d_denoiser(25)(noisy)
    assert out.shape == shape and np.isfinite(out).all()
