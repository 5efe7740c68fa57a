"""``n3seq-image upscale``, ``evaluate --task sr`` and ``train --task sr`` on tiny images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import n3seq_image.upscale as upscale_mod
from n3seq_image import VDSR
from n3seq_image.checkpoint import load_model, read_weights, save_weights
from n3seq_image.cli import main
from n3seq_image.data import load_image, read_image, save_image
from n3seq_image.imresize import imresize
from n3seq_image.sr import bicubic
from n3seq_image.train import zero_init_tails
from tests.image._helpers import smooth_image, tiny_weights


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def identity_vdsr(path, scales=(2, 3, 4)):
    """A tiny VDSR whose zero tail makes it the identity: it upscales like bicubic."""
    net = VDSR(depth=3, features=4)
    zero_init_tails(net)
    save_weights(path, net, extra={"task": "sr", "scales": list(scales)})
    return path


def random_vdsr(path, seed=0):
    torch.manual_seed(seed)
    save_weights(path, VDSR(depth=3, features=4), extra={"task": "sr", "scales": [2, 3, 4]})
    return path


def rgb_image(size, seed=0):
    return np.stack([smooth_image(size, 3 * seed + c) for c in range(3)], axis=-1)


@pytest.fixture
def grey_png(tmp_path):
    path = tmp_path / "grey.png"
    save_image(path, smooth_image(30, 1))
    return path


@pytest.fixture
def rgb_png(tmp_path):
    path = tmp_path / "rgb.png"
    save_image(path, rgb_image(26))
    return path


class TestUpscaleCommand:
    def test_grey_bicubic_is_the_protocol_bicubic(self, capsys, tmp_path, grey_png):
        out = tmp_path / "up.png"
        code, stdout, _ = run(capsys, "upscale", grey_png, out, "--scale", 3, "--model", "bicubic")
        assert code == 0 and "wrote" in stdout
        image, alpha, _ = read_image(out)
        assert image.shape == (90, 90) and alpha is None  # grey in, grey out
        expected = np.clip(bicubic(load_image(grey_png).astype(np.float64), 3), 0, 1)
        np.testing.assert_allclose(image, np.round(expected * 255) / 255, atol=1.01 / 255)

    def test_colour_goes_through_ycbcr(self, capsys, tmp_path, rgb_png):
        out = tmp_path / "up.png"
        code, _, _ = run(capsys, "upscale", rgb_png, out, "--scale", 2, "--model", "bicubic")
        assert code == 0
        up = load_image(out, grayscale=False)
        assert up.shape == (52, 52, 3)
        # Bicubic is linear with unit-sum weights and YCbCr is affine: same as bicubic on RGB.
        src = load_image(rgb_png, grayscale=False).astype(np.float64)
        rgb = imresize(torch.from_numpy(src).permute(2, 0, 1), 2).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(up, np.round(np.clip(rgb, 0, 1) * 255) / 255,
                                   atol=1.01 / 255)

    def test_network_runs_on_y_only(self, capsys, tmp_path, rgb_png):
        net = VDSR(depth=3, features=4)
        zero_init_tails(net)
        torch.nn.init.constant_(net.tail.bias, 0.05)  # output = bicubic Y + 0.05
        weights = tmp_path / "shift.safetensors"
        save_weights(weights, net, extra={"task": "sr", "scales": [2, 3, 4]})
        out_net, out_bic = tmp_path / "net.png", tmp_path / "bic.png"
        assert run(capsys, "upscale", rgb_png, out_net, "--scale", 2, "--model", weights)[0] == 0
        assert run(capsys, "upscale", rgb_png, out_bic, "--scale", 2, "--model", "bicubic")[0] == 0
        from n3seq_image.color import rgb_to_ycbcr

        net = rgb_to_ycbcr(load_image(out_net, grayscale=False).astype(np.float64))
        bic = rgb_to_ycbcr(load_image(out_bic, grayscale=False).astype(np.float64))
        np.testing.assert_allclose(net[..., 0] - bic[..., 0], 0.05, atol=1.5 / 255)
        # Chroma is bicubic in both (up to 8-bit rounding of the RGB output).
        np.testing.assert_allclose(net[..., 1:], bic[..., 1:], atol=1.5 / 255)

    def test_identity_network_tiled_equals_bicubic_with_progress(self, capsys, tmp_path):
        src = tmp_path / "big.png"
        save_image(src, smooth_image(70, 4))
        weights = identity_vdsr(tmp_path / "id.safetensors")
        out_net, out_bic = tmp_path / "net.png", tmp_path / "bic.png"
        code, stdout, err = run(capsys, "upscale", src, out_net, "--scale", 2, "--model", weights,
                                "--tile", 80, "--overlap", 16)
        assert code == 0 and stdout.strip() == f"wrote {out_net}"
        assert "tiles" in err  # 140 px in 80 px tiles: a progress bar on stderr
        run(capsys, "upscale", src, out_bic, "--scale", 2, "--model", "bicubic")
        np.testing.assert_allclose(load_image(out_net), load_image(out_bic), atol=1.01 / 255)

    def test_small_image_padded_for_n3net(self, tmp_path):
        from n3seq_image.sr_models import sr_model

        net = sr_model("n3net", depth=3, features=4, embed_features=4)
        zero_init_tails(net)
        weights = tmp_path / "n3.safetensors"
        save_weights(weights, net, extra={"task": "sr", "scales": [2, 3, 4]})
        src = tmp_path / "small.png"
        save_image(src, smooth_image(20, 2))  # 60 px after x3: below the 80 px window
        out = upscale_mod.upscale_file(src, tmp_path / "o.png", 3, model=str(weights),
                                       progress=False)
        assert out.shape == (60, 60)
        np.testing.assert_allclose(out, bicubic(load_image(src).astype(np.float64), 3),
                                   atol=1e-5)

    def test_alpha_is_upscaled(self, tmp_path):
        from PIL import Image

        rgba = np.concatenate([rgb_image(20), smooth_image(20, 9)[..., None]], axis=-1)
        src = tmp_path / "rgba.png"
        Image.fromarray(np.round(rgba * 255).astype(np.uint8), "RGBA").save(src)
        upscale_mod.upscale_file(src, tmp_path / "o.png", 2, model="bicubic", progress=False)
        image, alpha, _ = read_image(tmp_path / "o.png")
        assert image.shape == (40, 40, 3) and alpha.shape == (40, 40)
        expected = np.clip(bicubic(np.round(rgba[..., 3] * 255) / 255, 2), 0, 1)
        np.testing.assert_allclose(alpha, expected, atol=1.01 / 255)
        with pytest.raises(ValueError, match="alpha"):
            upscale_mod.upscale_file(src, tmp_path / "o.jpg", 2, model="bicubic")

    def test_missing_shipped_weights_fail_clearly(self, capsys, tmp_path, grey_png, monkeypatch):
        monkeypatch.setattr(upscale_mod, "WEIGHTS_DIR", tmp_path / "weights")
        for model, label in (("n3net", "N3Net-SR"), ("vdsr", "VDSR")):
            out = tmp_path / f"{model}.png"
            code, _, err = run(capsys, "upscale", grey_png, out, "--scale", 2, "--model", model)
            assert code == 1
            assert f"the shipped {label} weights are missing" in err and "reinstall" in err
            assert "--model bicubic" in err and not out.exists()
        # Once the file is there, the name loads it.
        identity_vdsr(tmp_path / "weights" / "vdsr.safetensors")
        code, _, _ = run(capsys, "upscale", grey_png, tmp_path / "v.png", "--scale", 2,
                         "--model", "vdsr")
        assert code == 0

    @pytest.mark.parametrize("model", ["n3net", "vdsr"])
    @pytest.mark.parametrize("scale", [2, 4])
    def test_shipped_weights_beat_bicubic_on_an_unseen_photo(self, capsys, tmp_path, model,
                                                             scale):
        # scikit-image's camera man is in neither training set (t91, train400). The LR is the
        # protocol's, saved as an 8-bit PNG as a user would have it.
        from skimage import data as skdata

        from n3seq_image.sr import prepare, sr_psnr

        weights = upscale_mod.sr_weights(model)
        notes = read_weights(weights)[1]["extra"]
        assert notes["task"] == "sr" and list(notes["scales"]) == [2, 3, 4] and notes["finished"]
        hr, lr = prepare(skdata.camera()[128:288, 160:320] / 255.0, scale)
        save_image(tmp_path / "lr.png", lr)
        psnr = {}
        for method in (model, "bicubic"):
            out = tmp_path / f"{method}.png"
            code, _, _ = run(capsys, "upscale", tmp_path / "lr.png", out, "--scale", scale,
                             "--model", method)
            assert code == 0
            psnr[method] = sr_psnr(load_image(out), hr, scale)
        assert psnr[model] > psnr["bicubic"] + 0.5, psnr

    def test_denoising_weights_refused(self, capsys, tmp_path, grey_png):
        weights = tiny_weights(tmp_path / "dn.safetensors")
        code, _, err = run(capsys, "upscale", grey_png, tmp_path / "o.png", "--scale", 2,
                           "--model", weights)
        assert code == 1 and "trained for 'denoise', not super-resolution" in err
        assert not (tmp_path / "o.png").exists()

    def test_untrained_scale_warns(self, capsys, tmp_path, grey_png):
        weights = identity_vdsr(tmp_path / "id.safetensors", scales=(2,))
        code, _, err = run(capsys, "upscale", grey_png, tmp_path / "o.png", "--scale", 4,
                           "--model", weights)
        assert code == 0 and "trained for scales [2], not x4" in err

    def test_argument_errors(self, capsys, tmp_path, grey_png):
        code, _, err = run(capsys, "upscale", grey_png, grey_png, "--scale", 2, "--model",
                           "bicubic")
        assert code == 2 and "is the input file" in err
        code, _, err = run(capsys, "upscale", grey_png, tmp_path / "o.gif", "--scale", 2,
                           "--model", "bicubic")
        assert code == 2 and "unsupported output format" in err
        with pytest.raises(SystemExit) as exc:
            main(["upscale", str(grey_png), str(tmp_path / "o.png"), "--scale", "1"])
        assert exc.value.code == 2
        code, _, err = run(capsys, "upscale", tmp_path / "none.png", tmp_path / "o.png",
                           "--scale", 2, "--model", "bicubic")
        assert code == 1 and "not found" in err
        code, _, err = run(capsys, "upscale", grey_png, tmp_path / "o.png", "--scale", 2,
                           "--model", "lanczos")
        assert code == 1 and "neither one of n3net, vdsr, bicubic" in err
        assert not (tmp_path / "o.png").exists()


class TestEvaluateSR:
    @pytest.fixture
    def folder(self, tmp_path):
        folder = tmp_path / "hr"
        for i in range(2):
            save_image(folder / f"im{i}.png", rgb_image(49, i))  # mod-cropped to 48 at x3/x4
        save_image(folder / "grey.png", smooth_image(50, 7))
        return folder

    def test_json_schema_and_methods(self, capsys, tmp_path, folder):
        ident = identity_vdsr(tmp_path / "ident.safetensors")
        rand = random_vdsr(tmp_path / "rand.safetensors")
        out = tmp_path / "r.json"
        code, stdout, _ = run(capsys, "evaluate", "--task", "sr", "--data", folder, "--scale", 3,
                              "--model", ident, "--model", rand, "--baselines", "bicubic",
                              "--json", out, "--no-progress")
        assert code == 0 and "x3, 3 images" in stdout
        result = json.loads(out.read_text())
        assert result["task"] == "sr" and result["scale"] == 3 and "sigma" not in result
        assert result["methods"] == ["bicubic", "ident", "rand"]
        assert result["images"] == ["grey.png", "im0.png", "im1.png"]
        assert len(result["rows"]) == 9
        assert set(result["rows"][0]) == {"image", "method", "psnr", "ssim", "seconds"}
        mean = result["mean"]
        assert set(mean["bicubic"]) == {"psnr", "ssim", "seconds"}
        # The identity network is bicubic in float32.
        assert mean["ident"]["psnr"] == pytest.approx(mean["bicubic"]["psnr"], abs=0.02)
        assert mean["rand"]["psnr"] != pytest.approx(mean["bicubic"]["psnr"], abs=0.02)

    def test_matches_the_protocol_by_hand(self, capsys, tmp_path, folder):
        from n3seq_image.sr import finish, prepare, sr_psnr

        code, _, _ = run(capsys, "evaluate", "--task", "sr", "--data", folder, "--scale", 4,
                         "--model", "bicubic", "--json", tmp_path / "r.json", "--no-progress")
        assert code == 0
        result = json.loads((tmp_path / "r.json").read_text())
        values = []
        for name in result["images"]:
            hr, lr = prepare(load_image(folder / name, grayscale=False), 4)
            values.append(sr_psnr(finish(bicubic(lr, 4)), hr, 4))
        assert result["mean"]["bicubic"]["psnr"] == pytest.approx(np.mean(values), abs=1e-9)

    def test_errors(self, capsys, tmp_path, folder):
        code, _, err = run(capsys, "evaluate", "--task", "sr", "--data", folder, "--model",
                           "bicubic")
        assert code == 2 and "--scale is required" in err
        code, _, err = run(capsys, "evaluate", "--task", "sr", "--data", folder, "--scale", 2,
                           "--baselines", "bm3d")
        assert code == 2 and "unknown ['bm3d'] for --task sr" in err
        dn = tiny_weights(tmp_path / "dn.safetensors")
        code, _, err = run(capsys, "evaluate", "--task", "sr", "--data", folder, "--scale", 2,
                           "--model", dn, "--json", tmp_path / "x.json")
        assert code == 1 and "not super-resolution" in err
        assert not (tmp_path / "x.json").exists()
        code, _, err = run(capsys, "evaluate", "--data", folder)
        assert code == 2 and "--sigma is required" in err


class TestTrainSR:
    def _data(self, tmp_path):
        a, b = tmp_path / "a", tmp_path / "b"
        for i in range(2):
            save_image(a / f"c{i}.png", rgb_image(100, i))
        save_image(b / "g.png", smooth_image(96, 5))
        save_image(b / "tiny.png", smooth_image(40, 6))  # smaller than the crop: left out
        return f"{a},{b}"

    @pytest.mark.parametrize(("model", "config"), [
        ("vdsr", '{"depth": 3, "features": 4}'),
        ("n3net", '{"depth": 2, "features": 4, "embed_features": 4, "embed_depth": 2}'),
    ])
    def test_two_steps_resume_and_use(self, capsys, tmp_path, model, config):
        data = self._data(tmp_path)
        val = tmp_path / "b"
        run_dir = tmp_path / "run"
        args = ["train", "--task", "sr", "--model", model, "--model-config", config,
                "--data", data, "--out", run_dir, "--crop", 80, "--batch-size", 2,
                "--val-data", val, "--val-images", 1, "--val-crop", 0, "--val-every", 1,
                "--checkpoint-every", 1, "--warmup-steps", 0, "--precision", "float32"]
        code, out, err = run(capsys, *args, "--steps", 3, "--stop-after", 2)
        assert code == 0, err
        summary = json.loads(out)
        assert summary["step"] == 2 and np.isfinite(summary["val_psnr"])
        assert not summary["finished"] and "stopped at step 2 of 3" in err
        assert "1 of 4 training images are smaller than crop=80" in err
        assert "val_psnr" in err  # the progress bar shows the validation PSNR
        # A checkpoint's weights carry the run's notes: they serve upscale like the final file.
        ckpt = run_dir / "checkpoints" / "step_0000001" / "model.safetensors"
        _, info = read_weights(ckpt)
        assert info["extra"]["task"] == "sr" and info["extra"]["scales"] == [2, 3, 4]
        assert info["extra"]["step"] == 1 and info["extra"]["finished"] is False
        code, _, err = run(capsys, "upscale", val / "g.png", tmp_path / "ckpt.png", "--scale", 2,
                           "--model", ckpt, "--no-progress")
        assert code == 0, err
        code, out, err = run(capsys, *args, "--steps", 3, "--resume")
        assert code == 0, err
        assert json.loads(out)["step"] == 3 and json.loads(out)["finished"]
        assert "stopped at step" not in err
        log = json.loads((run_dir / "log.json").read_text())
        assert [row["step"] for row in log] == [1, 2, 3]
        _, info = read_weights(run_dir / "model.safetensors")
        assert info["model"] == model
        assert info["extra"]["task"] == "sr" and info["extra"]["scales"] == [2, 3, 4]
        assert info["extra"]["train_data"] == "a,b" and "sigma" not in info["extra"]
        if model == "n3net":
            assert info["config"]["batch_norm"] is False and info["config"]["k"] == 7
        assert isinstance(load_model(run_dir / "model.safetensors"), type(
            load_model(run_dir / "checkpoints" / "step_0000003" / "model.safetensors")))
        # The run's weights serve upscale directly.
        code, _, err = run(capsys, "upscale", val / "g.png", tmp_path / "up.png", "--scale", 2,
                           "--model", run_dir / "model.safetensors", "--no-progress")
        assert code == 0, err
        assert load_image(tmp_path / "up.png").shape == (192, 192)

    def test_resumed_run_equals_straight_run(self, capsys, tmp_path):
        data = self._data(tmp_path)
        common = ["train", "--task", "sr", "--model", "vdsr", "--model-config",
                  '{"depth": 3, "features": 4}', "--data", data, "--crop", 80,
                  "--batch-size", 2, "--checkpoint-every", 1, "--warmup-steps", 0,
                  "--precision", "float32", "--steps", 4, "--no-progress"]
        assert run(capsys, *common, "--out", tmp_path / "straight")[0] == 0
        assert run(capsys, *common, "--out", tmp_path / "split", "--stop-after", 2)[0] == 0
        assert run(capsys, *common, "--out", tmp_path / "split", "--resume")[0] == 0
        a, _ = read_weights(tmp_path / "straight" / "model.safetensors")
        b, _ = read_weights(tmp_path / "split" / "model.safetensors")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)

    def test_bfloat16_autocast(self, capsys, tmp_path):
        data = self._data(tmp_path)
        base = ["train", "--task", "sr", "--model", "vdsr", "--model-config",
                '{"depth": 3, "features": 4}', "--data", data, "--crop", 80, "--batch-size", 2,
                "--warmup-steps", 0, "--steps", 3, "--val-every", 1, "--no-progress"]
        losses = {}
        for precision in ("float32", "bfloat16"):
            out = tmp_path / precision
            code, _, err = run(capsys, *base, "--out", out, "--precision", precision)
            assert code == 0, err
            losses[precision] = [r["loss"] for r in json.loads((out / "log.json").read_text())]
        assert all(np.isfinite(losses["bfloat16"]))
        assert losses["bfloat16"][0] == losses["float32"][0]  # zero tails: output = input
        assert losses["bfloat16"][1:] != losses["float32"][1:]  # the convolutions ran in bf16
        assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.2)

    @pytest.mark.parametrize(("model", "config", "decay", "init", "warned"), [
        ("vdsr", '{"depth": 3, "features": 4}', "1e-4", "zero-tail", True),
        ("vdsr", '{"depth": 3, "features": 4}', "0", "zero-tail", False),
        ("vdsr", '{"depth": 3, "features": 4}', "1e-4", "default", False),
        ("n3net", '{"depth": 2, "features": 4, "embed_features": 4, "embed_depth": 2}',
         "1e-4", "zero-tail", True),
    ])
    def test_weight_decay_with_zero_tails_without_batch_norm_warns(
            self, capsys, tmp_path, model, config, decay, init, warned):
        data = self._data(tmp_path)
        code, _, err = run(capsys, "train", "--task", "sr", "--model", model, "--model-config",
                           config, "--data", data, "--out", tmp_path / "r", "--crop", 80,
                           "--batch-size", 1, "--steps", 1, "--weight-decay", decay, "--init",
                           init, "--precision", "float32", "--no-progress")
        assert code == 0, err
        assert ("Adam's L2 decay shrinks the hidden weights" in err) is warned, err

    def test_decoupled_weight_decay_does_not_warn_and_is_recorded(self, capsys, tmp_path):
        data = self._data(tmp_path)
        code, _, err = run(capsys, "train", "--task", "sr", "--model", "vdsr", "--model-config",
                           '{"depth": 3, "features": 4}', "--data", data, "--out",
                           tmp_path / "r", "--crop", 80, "--batch-size", 1, "--steps", 1,
                           "--weight-decay", "1e-2", "--decoupled-weight-decay",
                           "--checkpoint-every", 1, "--precision", "float32", "--no-progress")
        assert code == 0, err
        assert "decay shrinks the hidden weights" not in err
        state = json.loads((tmp_path / "r" / "checkpoints" / "step_0000001" /
                            "state.json").read_text())
        assert state["state"]["config"]["decoupled_weight_decay"] is True

    def test_errors(self, capsys, tmp_path):
        data = self._data(tmp_path)
        code, _, err = run(capsys, "train", "--task", "sr", "--model", "dncnn", "--data", data,
                           "--out", tmp_path / "r", "--no-progress")
        assert code == 2 and "model must be one of ['n3net', 'vdsr'] for task 'sr'" in err
        code, _, err = run(capsys, "train", "--task", "sr", "--model", "vdsr", "--data", data,
                           "--out", tmp_path / "r", "--scales", "1,2", "--no-progress")
        assert code == 2 and "scales must be an integer >= 2" in err
        code, _, err = run(capsys, "train", "--task", "sr", "--model", "vdsr", "--data",
                           f"{data},{tmp_path / 'none'}", "--out", tmp_path / "r2",
                           "--no-progress")
        assert code == 1 and "image folder not found" in err
        code, _, err = run(capsys, "train", "--model", "vdsr", "--data", tmp_path / "a",
                           "--out", tmp_path / "r3", "--no-progress")
        assert code == 2 and "for task 'denoise'" in err
