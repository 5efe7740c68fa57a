"""``evaluate`` options of issue 11: --noise clipped, --precision, --model n3net-blind."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import n3seq_image.denoise as denoise_mod
import n3seq_image.precision as precision_mod
from n3seq_image.cli import main
from n3seq_image.data import add_noise, load_image, quantize_8bit
from n3seq_image.evaluate import evaluate, make_noisy
from n3seq_image.metrics import psnr
from tests.image._helpers import tiny_weights, write_folder


@pytest.fixture
def weights(tmp_path):
    return tiny_weights(tmp_path / "tiny.safetensors")


@pytest.fixture
def data(tmp_path):
    return write_folder(tmp_path / "set", count=3, size=40)


def call(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err, code, expected, fragment):
    assert code == expected, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("n3seq-image: error: "), err
    assert fragment in err.strip().splitlines()[-1], err


def spy():
    seen = []

    def run(noisy):
        seen.append(noisy.copy())
        return noisy

    return seen, run


class TestNoiseKind:
    @pytest.mark.parametrize("noise", ["gaussian", "clipped"])
    def test_methods_see_the_protocol_noise(self, data, noise):
        seen, method = spy()
        result = evaluate({"spy": method}, data, 50, seed=3, progress=False, noise=noise)
        assert result["noise"] == noise
        for i, (path, noisy) in enumerate(zip(sorted(data.iterdir()), seen)):
            clean = load_image(path)
            gaussian = add_noise(clean, 50, seed=[3, i])
            expected = quantize_8bit(gaussian) if noise == "clipped" else gaussian
            assert np.array_equal(noisy, expected)
            row = next(r for r in result["rows"] if r["image"] == path.name
                       and r["method"] == "noisy")
            assert row["psnr"] == pytest.approx(psnr(expected, clean))
        stacked = np.stack(seen)
        if noise == "clipped":  # in [0, 1], on the 256 levels of an 8-bit file
            assert stacked.min() >= 0 and stacked.max() <= 1
            np.testing.assert_allclose(stacked * 255, np.round(stacked * 255), atol=1e-4)
        else:  # today's protocol: not clipped
            assert stacked.min() < 0 and stacked.max() > 1

    def test_default_is_todays_gaussian_protocol(self, data):
        seen_default, a = spy()
        seen_gaussian, b = spy()
        default = evaluate({"m": a}, data, 25, progress=False)
        gaussian = evaluate({"m": b}, data, 25, progress=False, noise="gaussian")
        assert default["noise"] == "gaussian"
        assert default["mean"]["noisy"]["psnr"] == gaussian["mean"]["noisy"]["psnr"]
        assert all(np.array_equal(x, y) for x, y in zip(seen_default, seen_gaussian))

    def test_clipped_noise_is_weaker_at_high_sigma(self, data):
        clipped = evaluate({}, data, 50, progress=False, noise="clipped")
        gaussian = evaluate({}, data, 50, progress=False)
        assert clipped["mean"]["noisy"]["psnr"] > gaussian["mean"]["noisy"]["psnr"]

    @pytest.mark.parametrize("bad", ["poisson", "", None, "Clipped"])
    def test_unknown_noise_named(self, data, bad):
        with pytest.raises(ValueError, match="noise must be one of gaussian, clipped"):
            evaluate({}, data, 25, progress=False, noise=bad)
        with pytest.raises(ValueError, match="noise must be one of gaussian, clipped"):
            make_noisy(np.zeros((4, 4), np.float32), 25, 0, noise=bad)

    def test_cli_records_the_noise(self, capsys, tmp_path, data, weights):
        results = {}
        for noise in ("gaussian", "clipped"):
            path = tmp_path / f"{noise}.json"
            code, out, err = call(capsys, "evaluate", "--model", weights, "--data", data,
                                  "--sigma", 50, "--noise", noise, "--json", path,
                                  "--no-progress")
            assert code == 0, err
            assert f"noise={noise}" in out.splitlines()[0]
            results[noise] = json.loads(path.read_text())
            assert results[noise]["noise"] == noise
        assert (results["clipped"]["mean"]["noisy"]["psnr"]
                != results["gaussian"]["mean"]["noisy"]["psnr"])
        code, _, err = call(capsys, "evaluate", "--model", weights, "--data", data, "--sigma",
                            50, "--json", tmp_path / "default.json", "--no-progress")
        assert code == 0, err
        default = json.loads((tmp_path / "default.json").read_text())
        assert default["noise"] == "gaussian"
        for method, values in results["gaussian"]["mean"].items():  # unchanged numbers
            for key in ("psnr", "ssim"):
                assert default["mean"][method][key] == values[key]

    def test_cli_bad_noise(self, capsys, tmp_path, data):
        code, _, err = call(capsys, "evaluate", "--data", data, "--sigma", 25, "--noise",
                            "poisson", "--json", tmp_path / "r.json")
        one_line_error(err, code, 2, "--noise")
        assert not (tmp_path / "r.json").exists()


class TestPrecision:
    @pytest.mark.parametrize(("choice", "native", "autocast"), [
        ("auto", True, "bfloat16"), ("auto", False, "float32"), ("float32", True, "float32"),
        ("bfloat16", False, "bfloat16"),
    ])
    def test_cli_plumbs_and_records(self, capsys, monkeypatch, tmp_path, data, weights,
                                    choice, native, autocast):
        seen = []
        real = denoise_mod.autocast

        def spy_autocast(precision, device):
            seen.append(precision)
            return real(precision, device)

        monkeypatch.setattr(denoise_mod, "autocast", spy_autocast)
        monkeypatch.setattr(precision_mod, "bf16_supported", lambda device: native)
        extra = [] if choice == "auto" else ["--precision", choice]
        code, out, err = call(capsys, "evaluate", "--model", weights, "--data", data, "--sigma",
                              25, "--json", tmp_path / "r.json", "--no-progress", *extra)
        assert code == 0, err
        assert seen == [choice] * 3
        result = json.loads((tmp_path / "r.json").read_text())
        assert result["precision"] == choice and result["autocast"] == autocast
        assert f"networks in {autocast}" in out.splitlines()[0]

    def test_bfloat16_close_to_float32(self, capsys, tmp_path, data, weights):
        means = {}
        for choice in ("float32", "bfloat16"):
            path = tmp_path / f"{choice}.json"
            code, _, err = call(capsys, "evaluate", "--model", weights, "--data", data,
                                "--sigma", 25, "--precision", choice, "--json", path,
                                "--no-progress")
            assert code == 0, err
            means[choice] = json.loads(path.read_text())["mean"]["tiny"]["psnr"]
        assert means["bfloat16"] != means["float32"]
        assert means["bfloat16"] == pytest.approx(means["float32"], abs=0.1)

    def test_cli_bad_precision(self, capsys, tmp_path, data):
        code, _, err = call(capsys, "evaluate", "--data", data, "--sigma", 25, "--precision",
                            "half")
        one_line_error(err, code, 2, "--precision")


class TestBlindModel:
    def test_missing_blind_weights_are_a_clear_error(self, capsys, tmp_path, monkeypatch, data):
        monkeypatch.setattr(denoise_mod, "WEIGHTS_DIR", tmp_path / "no-weights")
        code, _, err = call(capsys, "evaluate", "--model", "n3net-blind", "--data", data,
                            "--sigma", 25, "--json", tmp_path / "r.json", "--no-progress")
        one_line_error(err, code, 1, "blind N3Net weights are not shipped yet")
        assert len(err.strip().splitlines()) == 1
        assert not (tmp_path / "r.json").exists()

    def test_blind_weights_evaluated_at_any_sigma(self, capsys, tmp_path, monkeypatch, data,
                                                  weights):
        folder = tmp_path / "weights"
        folder.mkdir()
        shutil.copy(weights, folder / denoise_mod.SHIPPED["n3net-blind"])
        monkeypatch.setattr(denoise_mod, "WEIGHTS_DIR", folder)
        code, _, err = call(capsys, "evaluate", "--model", "n3net-blind", "--data", data,
                            "--sigma", 40, "--json", tmp_path / "r.json", "--no-progress")
        assert code == 0, err
        result = json.loads((tmp_path / "r.json").read_text())
        assert result["methods"] == ["noisy", "n3net-blind"] and result["sigma"] == 40

    def test_sigma_still_required(self, capsys, tmp_path, data):
        code, _, err = call(capsys, "evaluate", "--model", "n3net-blind", "--data", data)
        one_line_error(err, code, 2, "--sigma is required")


@pytest.mark.parametrize("extra", [["--noise", "clipped"], ["--precision", "bfloat16"],
                                   ["--precision", "float32"], ["--sigma", "25"]])
def test_denoise_only_options_refused_for_sr(capsys, tmp_path, data, extra):
    code, _, err = call(capsys, "evaluate", "--task", "sr", "--scale", 2, "--data", data,
                        "--json", tmp_path / "r.json", *extra)
    one_line_error(err, code, 2, "applies to --task denoise only")
    assert not (tmp_path / "r.json").exists()


def test_scale_refused_for_denoise(capsys, tmp_path, data):
    code, _, err = call(capsys, "evaluate", "--sigma", 25, "--scale", 2, "--data", data,
                        "--json", tmp_path / "r.json")
    one_line_error(err, code, 2, "--scale 2 applies to --task sr only")
    assert not (tmp_path / "r.json").exists()


def test_sr_test_image_too_small_named_before_any_method_runs(capsys, tmp_path, monkeypatch):
    from n3seq_image.data import save_image
    from tests.image._helpers import smooth_image

    folder = tmp_path / "set"
    folder.mkdir()
    save_image(folder / "a_big.png", smooth_image(48, 1))
    # x7: mod-cropped to 21, below 2 * 7 + 11 = 25 (7 px shaved per border, then SSIM's 11×11)
    save_image(folder / "b_small.png", smooth_image(24, 2))
    calls = []
    monkeypatch.setattr("n3seq_image.sr_evaluate.prepare", lambda *a: calls.append(a))
    code, _, err = call(capsys, "evaluate", "--task", "sr", "--scale", 7, "--model", "bicubic",
                        "--data", folder, "--json", tmp_path / "r.json", "--no-progress")
    one_line_error(err, code, 1, "b_small.png (24×24 px) is too small for x7")
    assert "at least 25 px" in err and calls == [] and not (tmp_path / "r.json").exists()
    # at x4 the same image is large enough (24 >= 19), and is scored
    monkeypatch.undo()
    code, _, err = call(capsys, "evaluate", "--task", "sr", "--scale", 4, "--model", "bicubic",
                        "--data", folder, "--json", tmp_path / "r.json", "--no-progress")
    assert code == 0, err


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_sr_size_check_accepts_exactly_the_images_that_can_be_scored(tmp_path, monkeypatch,
                                                                      scale):
    import n3seq_image.sr_evaluate as sr_evaluate
    from n3seq_image.data import save_image
    from tests.image._helpers import smooth_image

    check, outcomes = sr_evaluate.check_test_image_sizes, set()
    for side in range(2 * scale + 6, 2 * scale + 16):
        folder = tmp_path / f"s{side}"
        folder.mkdir()
        path = folder / "img.png"
        save_image(path, smooth_image(64, side)[:side, : side + 5])  # height is the short side
        try:
            check([path], scale)
            accepted = True
        except ValueError:
            accepted = False
        monkeypatch.setattr(sr_evaluate, "check_test_image_sizes", lambda *a: None)
        try:
            sr_evaluate.evaluate_sr({}, folder, scale, progress=False)
            scored = True
        except ValueError:
            scored = False
        monkeypatch.undo()
        assert accepted == scored, (scale, side, accepted, scored)
        outcomes.add(accepted)
    assert outcomes == {True, False}  # the sizes straddle the limit


def test_a_failing_method_is_named_with_the_image(tmp_path):
    from n3seq_image.data import save_image
    from n3seq_image.sr_evaluate import evaluate_sr
    from tests.image._helpers import smooth_image

    folder = tmp_path / "set"
    folder.mkdir()
    save_image(folder / "first.png", smooth_image(40, 0))

    def broken(*args):
        raise ValueError("out of range")

    with pytest.raises(ValueError, match=r"^broken on .*first\.png: out of range$"):
        evaluate_sr({"broken": broken}, folder, 2, progress=False)
    with pytest.raises(ValueError, match=r"^broken on .*first\.png: out of range$"):
        evaluate({"broken": broken}, folder, 25, progress=False)
