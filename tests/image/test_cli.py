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
from n3seq_image.denoise import denoise_tensor, shipped_weights, tile_spans
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

    @pytest.mark.parametrize("sigma", [10, 45])
    def test_shipped_blind_n3net_without_sigma(self, tmp_path, sigma):
        # Far from 25 on both sides: the blind network (chosen because σ is left out) must
        # beat the σ = 25 network given the true σ, which it is shipped to do (and why
        # "n3net" with a given σ far from 25 runs it too).
        from skimage import data as skdata

        from n3seq_image.denoise import blind_available, denoise_file_report
        from n3seq_image.metrics import psnr

        assert blind_available(), "n3seq_image/weights/n3net_blind.safetensors is not shipped"
        clean = skdata.astronaut().mean(axis=2)[96:224, 160:288] / 255.0
        noisy = np.clip(clean + np.random.default_rng(0).standard_normal(clean.shape)
                        * sigma / 255, 0, 1)
        save_image(tmp_path / "noisy.png", noisy)
        blind = denoise_file_report(tmp_path / "noisy.png", tmp_path / "b.png")
        assert blind.model == "n3net-blind" and blind.sigma_estimated
        fixed = denoise_file_report(tmp_path / "noisy.png", tmp_path / "f.png", sigma=sigma,
                                    model="n3net-sigma25")
        assert fixed.model == "n3net-sigma25"
        gain = psnr(blind.denoised, clean) - psnr(fixed.denoised, clean)
        assert gain > 0.3, gain


class TestTiling:
    @pytest.mark.parametrize("tile,overlap", [(96, 16), (512, 48), (80, 39), (200, 0)])
    def test_tile_spans_cover_with_overlap(self, tile, overlap):
        for length in (1, 80, 81, 200, 513, 1024, 2000, 2001):
            size, starts = tile_spans(length, tile, overlap)
            if length <= tile:
                assert (size, starts) == (length, [0])
                continue
            assert min(80, tile) <= size <= tile and starts[0] == 0
            assert starts[-1] + size == length
            gaps = np.diff(starts)
            assert (gaps > 0).all() and (size - gaps >= overlap).all(), (length, size, starts)
            # the fewest tiles of size `tile` that could cover it with this overlap
            fewest = 1 + -(-(length - tile) // (tile - overlap))
            assert len(starts) == fewest

    @pytest.mark.parametrize(("length", "tile", "overlap", "message"), [
        (0, 512, 48, "length must be an int >= 1, got 0"),
        (100.0, 512, 48, "length must be an int >= 1, got 100.0"),
        (100, 64, 8, "tile must be >= 80, got 64"),
        (100, 96, 48, r"overlap must be in \[0, tile/2\), got 48 for tile 96"),
        (100, 96, -1, r"overlap must be in \[0, tile/2\), got -1"),
    ])
    def test_tile_spans_rejects_bad_arguments(self, length, tile, overlap, message):
        with pytest.raises(ValueError, match=message):
            tile_spans(length, tile, overlap)

    def test_tile_spans_shrink_tiles_to_what_covering_needs(self):
        # 1024 px in 512-px tiles with 48 px overlap: 3 tiles are needed; 374 px each suffice
        assert tile_spans(1024, 512, 48) == (374, [0, 325, 650])

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


def test_demo(tmp_path, weights, monkeypatch):
    from PIL import ImageDraw

    from n3seq_image.demo import GAP, LABEL_HEIGHT

    drawn = []
    real = ImageDraw.ImageDraw.text

    def spy(self, xy, text, *args, **kwargs):
        drawn.append((xy, text))
        return real(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", spy)
    result = run_demo(tmp_path / "demo", sigma=25, model=str(weights))
    assert result["psnr_noisy"] == pytest.approx(20.17, abs=0.1)
    for name in ("noisy", "denoised", "side_by_side"):
        assert (tmp_path / "demo" / f"{name}.png").is_file()
    side = load_image(tmp_path / "demo" / "side_by_side.png")
    assert side.shape == (LABEL_HEIGHT + 512, 3 * 512 + 2 * GAP)
    labels = [text for _, text in drawn]
    assert labels[0] == "clean"
    assert labels[1].startswith("noisy") and f"PSNR {result['psnr_noisy']:.2f} dB" in labels[1]
    assert labels[2].startswith("denoised (tiny)")
    assert f"PSNR {result['psnr_denoised']:.2f} dB" in labels[2]
    # each label is drawn in the strip above its own panel, in black on white
    assert [xy[0] for xy, _ in drawn] == [6, 6 + 512 + GAP, 6 + 2 * (512 + GAP)]
    for i in range(3):
        strip = side[:LABEL_HEIGHT, i * (512 + GAP) : i * (512 + GAP) + 512]
        assert strip.min() < 0.2 and np.median(strip) == 1.0
    # the panels below the strip are the images themselves
    clean = load_image(tmp_path / "demo" / "denoised.png")
    np.testing.assert_allclose(side[LABEL_HEIGHT:, -512:], clean, atol=1 / 255 + 1e-6)


def test_labelled_panels_refuses_mismatches():
    from n3seq_image.demo import labelled_panels

    with pytest.raises(ValueError, match="one label per panel"):
        labelled_panels([np.zeros((4, 4))], ["a", "b"])
    with pytest.raises(ValueError, match="of one height"):
        labelled_panels([np.zeros((4, 4)), np.zeros((5, 4))], ["a", "b"])


def test_console_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "n3seq_image.cli", "--help"], capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    for command in ("train", "evaluate", "denoise", "demo"):
        assert command in proc.stdout


# --------------------------------------------------------------------------- bad inputs


def identity_weights(path):
    """A DnCNN whose zero tail makes it the identity (output = input): values can be compared."""
    import torch

    from n3seq_image import DnCNN
    from n3seq_image.checkpoint import save_weights
    from n3seq_image.train import zero_init_tails

    torch.manual_seed(0)
    net = DnCNN(1, 1, depth=3, features=4)
    zero_init_tails(net)
    save_weights(path, net, extra={"sigma": "25"})
    return path


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def assert_one_line_error(err, code, expected_code, fragment):
    lines = err.strip().splitlines()
    assert code == expected_code, err
    assert "Traceback" not in err, err
    assert lines[-1].startswith("n3seq-image: error: "), err
    assert fragment in lines[-1], err
    if expected_code == 1:  # argparse's own usage errors print the usage line first
        assert len(lines) == 1, err


def call(capsys, argv):
    """``main(argv)`` with argparse's SystemExit turned into the exit code."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


class TestOutputIsNeverTheInput:
    @pytest.mark.parametrize("how", ["same", "dot", "symlink", "hardlink", "dotdot"])
    def test_refused_by_any_path(self, capsys, tmp_path, gray_png, weights, monkeypatch, how):
        monkeypatch.chdir(tmp_path)
        before = gray_png.read_bytes()
        if how == "symlink":
            (tmp_path / "link.png").symlink_to(gray_png)
            out = "link.png"
        elif how == "hardlink":
            (tmp_path / "hard.png").hardlink_to(gray_png)
            out = "hard.png"
        else:
            (tmp_path / "sub").mkdir()
            out = {"same": str(gray_png), "dot": "./gray.png", "dotdot": "sub/../gray.png"}[how]
        files = listing(tmp_path)
        code, _, err = call(capsys, ["denoise", "gray.png", out, "--sigma", 25, "--model",
                                     weights])
        assert_one_line_error(err, code, 2, "is the input file")
        assert gray_png.read_bytes() == before
        assert listing(tmp_path) == files

    def test_api_refuses_too(self, tmp_path, gray_png):
        with pytest.raises(ValueError, match="is the input file"):
            denoise_mod.denoise_file(gray_png, tmp_path / "." / "gray.png", 25, model="nlmeans")


def _denoise_table():
    """(arguments after 'denoise IN OUT', exit code, message fragment)."""
    return [
        (["--sigma", "-5"], 2, "(0, 255]"),
        (["--sigma", "0"], 2, "(0, 255]"),
        (["--sigma", "300"], 2, "(0, 255]"),
        (["--sigma", "nan"], 2, "(0, 255]"),
        (["--sigma", "inf"], 2, "(0, 255]"),
        (["--sigma", "abc"], 2, "expected a number"),
        (["--sigma", "10-20"], 2, "not a range"),
        (["--sigma", "25", "--tile", "50"], 2, "--tile: expected an integer >= 80"),
        (["--sigma", "25", "--tile", "x"], 2, "--tile"),
        (["--sigma", "25", "--overlap", "-1"], 2, "--overlap"),
        (["--sigma", "25", "--overlap", "300"], 2, "overlap must be in [0, tile/2)"),
        (["--sigma", "25", "--add-noise", "-1"], 2, "--add-noise"),
        (["--sigma", "25", "--add-noise", "1.5"], 2, "--add-noise"),
        (["--sigma", "25", "--threads", "-1"], 2, "--threads"),
        (["--sigma", "25", "--threads", "100000"], 2, "--threads"),
        (["--sigma", "25", "--device", "bogus"], 2, "unknown device 'bogus'"),
        (["--sigma", "25", "--device", "cuda:99"], 2, "cuda:99"),
        (["--sigma", "25", "--device", "meta"], 2, "not supported"),
        (["--sigma", "25", "--model", "foo"], 1, "nlmeans, bm3d"),
        (["--sigma", "25", "--model", ""], 2, "--model: expected a model name"),
        (["--sigma", "25", "--model", "  "], 2, "--model: expected a model name"),
        (["--sigma", "25", "--model", "official:missing.pth"], 1, "no checkpoint file"),
        (["--sigma", "25", "--bogus"], 2, "unrecognized arguments"),
        (["--sigma", "25", "--model", "MODEL", "--device", "cuda"], None, "cuda"),
    ]


class TestExceptionTable:
    """Every bad input ends in one line on stderr, the right exit code, and no file."""

    @pytest.mark.parametrize(("extra", "expected", "fragment"), _denoise_table())
    def test_denoise(self, capsys, tmp_path, gray_png, weights, monkeypatch, extra, expected,
                     fragment):
        import torch

        monkeypatch.chdir(tmp_path)
        if "cuda" in extra:
            if torch.cuda.is_available():
                pytest.skip("a GPU is present")
            expected = 2
        extra = [str(weights) if a == "MODEL" else a for a in extra]
        files = listing(tmp_path)
        code, _, err = call(capsys, ["denoise", gray_png, tmp_path / "out" / "o.png", *extra])
        assert_one_line_error(err, code, expected, fragment)
        assert listing(tmp_path) == files

    @pytest.mark.parametrize(("output", "fragment"), [
        ("folder", "is a folder"),
        ("gray.png/o.png", "is a file, not a folder"),
        ("o.gif", "unsupported output format '.gif'"),
        ("o", "unsupported output format ''"),
        ("/dev/null", "not a regular file"),
    ])
    def test_denoise_outputs(self, capsys, tmp_path, gray_png, weights, output, fragment):
        (tmp_path / "folder").mkdir()
        files = listing(tmp_path)
        code, _, err = call(capsys, ["denoise", gray_png, tmp_path / output, "--sigma", 25,
                                     "--model", weights])
        assert_one_line_error(err, code, 2, fragment)
        assert listing(tmp_path) == files

    def test_denoise_inputs(self, capsys, tmp_path, weights):
        (tmp_path / "folder.png").mkdir()
        (tmp_path / "empty.png").write_bytes(b"")
        (tmp_path / "trunc.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
        files = listing(tmp_path)
        for name, fragment in [("nope.png", "not found"), ("folder.png", "not a file"),
                               ("empty.png", "cannot read image"),
                               ("trunc.png", "cannot read image")]:
            code, _, err = call(capsys, ["denoise", tmp_path / name, tmp_path / "o.png",
                                         "--sigma", 25, "--model", weights])
            assert_one_line_error(err, code, 1, fragment)
        assert listing(tmp_path) == files

    @pytest.mark.parametrize(("extra", "expected", "fragment"), [
        (["--model-config", "[1]"], 2, "--model-config must be a JSON object"),
        (["--model-config", "{oops"], 2, "not valid JSON"),
        (["--model-config", '{"featurs": 4}'], 2, "unknown dncnn config key(s) ['featurs']"),
        (["--model-config", '{"features": 100000000, "depth": 100}'], 2, "out of range"),
        (["--model-config", '{"depth": 3.5}'], 2, "'depth' must be an integer"),
        (["--model-config", '{"batch_norm": "yes"}'], 2, "'batch_norm' must be true or false"),
        (["--lr", "inf"], 2, "--lr must be a finite number > 0"),
        (["--lr", "nan"], 2, "--lr must be a finite number > 0"),
        (["--lr", "0"], 2, "--lr must be a finite number > 0"),
        (["--lr-decay", "-1"], 2, "--lr-decay must be a finite number > 0 and <= 1"),
        (["--lr-decay", "2"], 2, "--lr-decay"),
        (["--val-crop", "-5"], 2, "--val-crop must be an integer >= 0"),
        (["--weight-decay", "-1"], 2, "--weight-decay"),
        (["--max-minutes", "nan"], 2, "--max-minutes"),
        (["--keep-checkpoints", "-1"], 2, "--keep-checkpoints"),
        (["--warmup-steps", "-3"], 2, "--warmup-steps"),
        (["--stop-after", "-1"], 2, "--stop-after"),
        (["--min-lr-ratio", "2"], 2, "--min-lr-ratio"),
        (["--seed", "-1"], 2, "--seed"),
        (["--threads", "-1"], 2, "--threads"),
        (["--steps", "0"], 2, "--steps"),
        (["--sigma", "-5"], 2, "sigma"),
        (["--sigma", "1e-3-300"], 2, "sigma range"),
        (["--resume"], 1, "no checkpoint found"),
    ])
    def test_train(self, capsys, tmp_path, extra, expected, fragment):
        data = write_folder(tmp_path / "data", count=2, size=32)
        files = listing(tmp_path)
        code, _, err = call(capsys, ["train", "--data", data, "--out", tmp_path / "new" / "run",
                                     "--model", "dncnn", "--no-progress", *extra])
        assert_one_line_error(err, code, expected, fragment)
        assert listing(tmp_path) == files  # not even the --out folder

    @pytest.mark.parametrize(("data", "fragment"), [("missing", "image folder not found"),
                                                    ("empty", "no images")])
    def test_train_data_folder(self, capsys, tmp_path, data, fragment):
        (tmp_path / "empty").mkdir()
        files = listing(tmp_path)
        code, _, err = call(capsys, ["train", "--data", tmp_path / data, "--out",
                                     tmp_path / "run", "--no-progress"])
        assert_one_line_error(err, code, 1, fragment)
        assert listing(tmp_path) == files

    def test_train_out_is_a_file(self, capsys, tmp_path, gray_png):
        data = write_folder(tmp_path / "data", count=2, size=32)
        code, _, err = call(capsys, ["train", "--data", data, "--out", gray_png])
        assert_one_line_error(err, code, 2, "is a file, not a folder")

    @pytest.mark.parametrize(("extra", "expected", "fragment"), [
        (["--baselines", "wiener"], 2, "unknown ['wiener']"),
        (["--csv", "CSV", "--json", "CSV"], 2, "the same file"),
        (["--csv", "DIR"], 2, "is a folder"),
        (["--json", "FILE/r.json"], 2, "is a file, not a folder"),
        (["--model", "MODEL", "--json", "MODEL"], 2, "is the input file"),
        (["--csv", "IMAGE"], 2, "is the input file"),
        (["--model", "MODEL", "--data", "MODEL"], 1, "is a file, not an image folder"),
        (["--skip", "-1"], 2, "--skip"),
        (["--skip", "5", "--model", "MODEL"], 1, "skip=5 leaves none of the 1 images"),
        (["--seed", "-1"], 2, "--seed"),
        (["--limit", "0"], 2, "--limit"),
        (["--device", "bogus"], 2, "unknown device"),
        (["--tile", "79"], 2, "--tile"),
        (["--model", "MODEL", "--data", "NODATA"], 1, "image folder not found"),
    ])
    def test_evaluate(self, capsys, tmp_path, weights, extra, expected, fragment):
        data = write_folder(tmp_path / "data", count=1, size=32)
        (tmp_path / "dir").mkdir()
        subs = {"CSV": str(tmp_path / "r.csv"), "DIR": str(tmp_path / "dir"),
                "FILE/r.json": str(weights / "r.json"), "MODEL": str(weights),
                "NODATA": str(tmp_path / "nodata"), "IMAGE": str(data / "img00.png")}
        files = listing(tmp_path)
        code, _, err = call(capsys, ["evaluate", "--data", data, "--sigma", 25,
                                     "--no-progress", *[subs.get(a, a) for a in extra]])
        assert_one_line_error(err, code, expected, fragment)
        assert listing(tmp_path) == files

    @pytest.mark.parametrize(("extra", "fragment"), [(["--sigma", "-1"], "--sigma"),
                                                     (["--seed", "-1"], "--seed"),
                                                     (["--out", "FILE"], "is a file")])
    def test_demo(self, capsys, tmp_path, gray_png, extra, fragment):
        extra = [str(gray_png) if a == "FILE" else a for a in extra]
        files = listing(tmp_path)
        code, _, err = call(capsys, ["demo", *extra])
        assert_one_line_error(err, code, 2, fragment)
        assert listing(tmp_path) == files


class TestHostileWeights:
    """A weights file's metadata is checked before any model is built from it."""

    @pytest.mark.parametrize(("config", "fragment"), [
        ("[1, 2]", "must be a JSON object"),
        ('"dncnn"', "must be a JSON object"),
        ("{oops", "is not valid JSON"),
        ('{"features": 100000000, "depth": 100}', "'features' = 100000000 is out of range"),
        ('{"depth": 1000000000}', "'depth' = 1000000000 is out of range"),
        ('{"depth": 3.0, "features": 4}', "'depth' must be an integer"),
        ('{"depth": true, "features": 4}', "'depth' must be an integer"),
        ('{"depth": 3, "features": 4, "evil": 1}', "unknown dncnn config key(s) ['evil']"),
        ('{"depth": 3, "features": 8}', "shape mismatches"),
        ('{"depth": 5, "features": 4}', "missing keys"),
    ])
    def test_refused(self, capsys, tmp_path, gray_png, weights, config, fragment):
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(weights), "pt") as f:
            meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        bad = tmp_path / "bad.safetensors"
        save_file(state, str(bad), metadata={**meta, "config": config})
        files = listing(tmp_path)
        code, _, err = call(capsys, ["denoise", gray_png, tmp_path / "o.png", "--sigma", 25,
                                     "--model", bad])
        assert_one_line_error(err, code, 1, fragment)
        assert "bad.safetensors" in err
        assert listing(tmp_path) == files

    def test_unknown_model_name(self, capsys, tmp_path, gray_png, weights):
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(weights), "pt") as f:
            meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        bad = tmp_path / "bad.safetensors"
        save_file(state, str(bad), metadata={**meta, "model": "unet"})
        code, _, err = call(capsys, ["denoise", gray_png, tmp_path / "o.png", "--sigma", 25,
                                     "--model", bad])
        assert_one_line_error(err, code, 1, "unknown model 'unet'")


class TestFailingDisk:
    def test_full_disk(self, capsys, tmp_path, gray_png, weights, monkeypatch):
        import errno

        from PIL import Image

        def full(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(Image.Image, "save", full)
        files = listing(tmp_path)
        code, _, err = call(capsys, ["denoise", gray_png, tmp_path / "new" / "o.png",
                                     "--sigma", 25, "--model", weights])
        assert_one_line_error(err, code, 1, "No space left on device")
        assert "o.png" in err and ".tmp" not in err
        assert listing(tmp_path) == files  # no partial file, no new folder

    def test_read_only_folder(self, capsys, tmp_path, gray_png, weights, monkeypatch):
        import errno
        import os
        import tempfile

        ro = tmp_path / "ro"
        ro.mkdir()
        if os.geteuid() == 0:  # root writes into 0555 folders: refuse the temp file instead
            def denied(*args, **kwargs):
                raise PermissionError(errno.EACCES, "Permission denied")

            monkeypatch.setattr(tempfile, "mkstemp", denied)
        else:
            ro.chmod(0o555)
        try:
            code, _, err = call(capsys, ["denoise", gray_png, ro / "o.png", "--sigma", 25,
                                         "--model", weights])
        finally:
            ro.chmod(0o755)
        assert_one_line_error(err, code, 1, "Permission denied")
        assert list(ro.iterdir()) == []

    def test_unexpected_error_is_one_line(self, capsys, tmp_path, gray_png, monkeypatch):
        def broken(*args, **kwargs):
            raise KeyError("internal")

        monkeypatch.setattr(denoise_mod, "get_denoiser", broken)
        code, _, err = call(capsys, ["denoise", gray_png, tmp_path / "o.png", "--sigma", 25])
        assert_one_line_error(err, code, 1, "unexpected KeyError")
        assert "N3SEQ_DEBUG=1" in err

    def test_overflow_is_a_reported_failure(self, capsys, tmp_path, gray_png, monkeypatch):
        def overflowing(*args, **kwargs):
            raise OverflowError("N3Net output overflows float32 (|value| up to 3.4e+38)")

        monkeypatch.setattr(denoise_mod, "get_denoiser", overflowing)
        code, _, err = call(capsys, ["denoise", gray_png, tmp_path / "o.png", "--sigma", 25])
        assert_one_line_error(err, code, 1, "output overflows float32")
        assert "unexpected" not in err and not (tmp_path / "o.png").exists()


class TestImageModes:
    """Every PIL mode is read on its real scale and written back as what it was."""

    @pytest.fixture
    def identity(self, tmp_path):
        return identity_weights(tmp_path / "identity.safetensors")

    @staticmethod
    def ramp():
        y, x = np.mgrid[0:90, 0:96] / 96
        return (0.1 + 0.8 * (0.5 + 0.5 * np.sin(4 * x + 2 * y))).astype(np.float32)

    def denoise(self, capsys, src, out, identity):
        code, _, err = call(capsys, ["denoise", src, out, "--sigma", 25, "--model", identity])
        assert code == 0, err
        from PIL import Image

        with Image.open(out) as img:
            return img.mode, np.asarray(img)

    def test_float_tiff_is_not_truncated(self, capsys, tmp_path, identity):
        from PIL import Image

        clean = self.ramp()
        Image.fromarray(clean).save(tmp_path / "f.tif")
        mode, out = self.denoise(capsys, tmp_path / "f.tif", tmp_path / "o.tif", identity)
        assert mode == "F"
        np.testing.assert_allclose(out, clean, atol=1e-6)  # was black (mean 0) before
        mode, out = self.denoise(capsys, tmp_path / "f.tif", tmp_path / "o.png", identity)
        assert mode.startswith("I;16")
        np.testing.assert_allclose(out / 65535.0, clean, atol=1 / 65535)

    @pytest.mark.parametrize("suffix", [".png", ".tif"])
    def test_16_bit_in_16_bit_out(self, capsys, tmp_path, identity, suffix):
        from PIL import Image

        clean16 = np.round(self.ramp() * 65535).astype(np.uint16)
        Image.fromarray(clean16).save(tmp_path / f"i16{suffix}")
        mode, out = self.denoise(capsys, tmp_path / f"i16{suffix}", tmp_path / f"o{suffix}",
                                 identity)
        assert mode.startswith("I;16") and np.array_equal(out, clean16)

    def test_32_bit_integer_in_16_bit_range(self, capsys, tmp_path, identity):
        from PIL import Image

        clean = np.round(self.ramp() * 65535).astype(np.int32)
        Image.fromarray(clean).save(tmp_path / "i.tif")
        mode, out = self.denoise(capsys, tmp_path / "i.tif", tmp_path / "o.png", identity)
        assert mode.startswith("I;16") and np.array_equal(out, clean)

    @pytest.mark.parametrize("mode", ["LA", "RGBA"])
    def test_alpha_is_copied_through(self, capsys, tmp_path, identity, mode):
        from PIL import Image

        grey = np.round(self.ramp() * 255).astype(np.uint8)
        alpha = np.tile(np.arange(96, dtype=np.uint8) * 2, (90, 1))
        colour = [grey, grey[::-1], 255 - grey] if mode == "RGBA" else [grey]
        Image.fromarray(np.stack([*colour, alpha], axis=-1)).save(tmp_path / "a.png")
        got, out = self.denoise(capsys, tmp_path / "a.png", tmp_path / "o.png", identity)
        assert got == mode
        assert np.array_equal(out[..., -1], alpha)
        assert np.array_equal(out[..., :-1], np.stack(colour, axis=-1))

    def test_exif_orientation_is_applied(self, capsys, tmp_path, identity):
        from PIL import Image

        grey = np.round(self.ramp() * 255).astype(np.uint8)  # 90 x 96
        img = Image.fromarray(grey)
        exif = img.getexif()
        exif[0x0112] = 6  # "rotate 90° clockwise to display"
        img.save(tmp_path / "cam.jpg", exif=exif, quality=100)
        _, out = self.denoise(capsys, tmp_path / "cam.jpg", tmp_path / "o.png", identity)
        assert out.shape == (96, 90)  # as displayed, not as stored

    def test_alpha_to_jpeg_refused(self, capsys, tmp_path, identity):
        from PIL import Image

        Image.new("RGBA", (90, 90), (10, 20, 30, 40)).save(tmp_path / "a.png")
        code, _, err = call(capsys, ["denoise", tmp_path / "a.png", tmp_path / "o.jpg",
                                     "--sigma", 25, "--model", identity])
        assert_one_line_error(err, code, 1, "cannot store the alpha")
        assert not (tmp_path / "o.jpg").exists()

    @pytest.mark.parametrize(("mode", "written"), [("L", "L"), ("1", "L"), ("P", "RGB"),
                                                   ("CMYK", "RGB"), ("RGB", "RGB")])
    def test_grey_stays_grey_colour_stays_colour(self, capsys, tmp_path, identity, mode,
                                                 written):
        from PIL import Image

        grey = np.round(self.ramp() * 255).astype(np.uint8)
        rgb = Image.fromarray(np.stack([grey, grey[::-1], 255 - grey], axis=-1))
        img = {"L": Image.fromarray(grey), "1": Image.fromarray(grey > 128),
               "P": rgb.convert("P"), "CMYK": rgb.convert("CMYK"), "RGB": rgb}[mode]
        suffix = ".tif" if mode == "CMYK" else ".png"
        img.save(tmp_path / f"in{suffix}")
        got, out = self.denoise(capsys, tmp_path / f"in{suffix}", tmp_path / "o.png", identity)
        assert got == written
        expected = np.asarray(img.convert(written))
        assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1

    @pytest.mark.parametrize(("values", "fragment"), [
        ("nan", "NaN or infinite (first at row 3, column 4"),
        ("scale255", "on the [0, 1] scale"),
        ("int32", "outside the 16-bit range"),
    ])
    def test_unreadable_values_refused(self, capsys, tmp_path, identity, values, fragment):
        from PIL import Image

        clean = self.ramp()
        if values == "nan":
            clean[3, 4] = np.nan
            img = Image.fromarray(clean)
        elif values == "scale255":
            img = Image.fromarray(clean * 255)
        else:
            img = Image.fromarray((clean * 2**24).astype(np.int32))
        img.save(tmp_path / "bad.tif")
        code, _, err = call(capsys, ["denoise", tmp_path / "bad.tif", tmp_path / "o.png",
                                     "--sigma", 25, "--model", identity])
        assert_one_line_error(err, code, 1, fragment)
        assert not (tmp_path / "o.png").exists()


class TestHelp:
    @pytest.mark.parametrize("argv", [["--help"], ["denoise", "--help"], ["train", "--help"],
                                      ["evaluate", "--help"], ["demo", "--help"]])
    def test_help_imports_no_torch(self, argv):
        code = (
            "import sys\n"
            "from n3seq_image.cli import main\n"
            "try:\n"
            f"    main({argv!r})\n"
            "except SystemExit as exc:\n"
            "    assert exc.code == 0, exc.code\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "print('ok')\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0 and "ok" in done.stdout, done.stderr

    def test_defaults_and_help_texts(self, capsys):
        for command in ("denoise", "evaluate", "train"):
            with pytest.raises(SystemExit):
                main([command, "--help"])
            text = " ".join(capsys.readouterr().out.split())
            assert "(default: " in text
            if command == "train":
                assert "--steps STEPS optimisation steps" in text
                assert "(default: 1000)" in text
            else:
                assert "--overlap OVERLAP overlap of neighbouring tiles" in text
                assert "--device DEVICE torch device" in text
                assert "(default: 48)" in text and "(default: cpu)" in text


def test_demo_says_what_it_is_doing(tmp_path, weights, capsys):
    run_demo(tmp_path / "demo", sigma=25, model=str(weights))
    out, err = capsys.readouterr()
    assert out == ""
    stages = ["loading the model", "denoising", "writing"]
    positions = [err.find(stage) for stage in stages]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), err


def test_save_image_refuses_8_bit_arrays(tmp_path):
    with pytest.raises(TypeError, match="float array on the \\[0, 1\\] scale"):
        save_image(tmp_path / "u8.png", np.full((8, 8), 200, dtype=np.uint8))  # was all-white
    with pytest.raises(ValueError, match="NaN/inf"):
        save_image(tmp_path / "n.png", np.full((8, 8), np.nan, dtype=np.float32))
    assert list(tmp_path.iterdir()) == []


def test_denoise_file_checks_sigma_first(tmp_path, gray_png, monkeypatch):
    monkeypatch.setattr(denoise_mod, "read_image", lambda *a: pytest.fail("read"))
    with pytest.raises(ValueError, match="sigma"):
        denoise_mod.denoise_file(gray_png, tmp_path / "o.png", -5, model="nlmeans")
