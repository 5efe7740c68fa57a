"""PSNR / SSIM and the evaluation protocol, against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from n3seq_image.data import save_image
from n3seq_image.evaluate import evaluate, format_table, write_results
from n3seq_image.metrics import batch_psnr, psnr, ssim


class TestPSNR:
    def test_hand_computed(self):
        clean = np.zeros((2, 2))
        estimate = np.array([[0.1, 0.2], [0.3, 0.4]])
        # MSE = (0.01 + 0.04 + 0.09 + 0.16) / 4 = 0.075
        assert psnr(estimate, clean) == pytest.approx(10 * math.log10(1 / 0.075))

    def test_constant_offset_is_20db(self):
        assert psnr(np.full((8, 8), 0.1), np.zeros((8, 8))) == pytest.approx(20.0)

    def test_data_range(self):
        assert psnr(np.full((4, 4), 25.5), np.zeros((4, 4)), data_range=255) == pytest.approx(20.0)

    def test_identical_is_inf(self):
        x = np.random.default_rng(0).random((5, 5))
        assert psnr(x, x) == math.inf

    def test_tensor_input(self):
        assert psnr(torch.full((3, 3), 0.01), torch.zeros(3, 3)) == pytest.approx(40.0)

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="same shape"):
            psnr(np.zeros((2, 2)), np.zeros((2, 3)))

    def test_batch_matches_single(self):
        a, b = torch.rand(3, 1, 6, 6), torch.rand(3, 1, 6, 6)
        per_image = batch_psnr(a, b)
        for i in range(3):
            assert per_image[i].item() == pytest.approx(psnr(a[i], b[i]), rel=1e-5)

    def test_batch_shape_mismatch(self):
        with pytest.raises(ValueError, match="same shape"):
            batch_psnr(torch.zeros(2, 4), torch.zeros(2, 5))


class TestSSIM:
    def test_identical_is_one(self):
        x = np.random.default_rng(0).random((32, 32))
        assert ssim(x, x) == pytest.approx(1.0)

    def test_noise_lowers_ssim(self):
        rng = np.random.default_rng(0)
        x = rng.random((32, 32))
        mild, strong = x + 0.01 * rng.standard_normal(x.shape), x + 0.2 * rng.standard_normal(x.shape)
        assert 1.0 > ssim(mild, x) > ssim(strong, x)

    def test_colour_and_bad_rank(self):
        x = np.random.default_rng(0).random((16, 16, 3))
        assert ssim(x, x) == pytest.approx(1.0)
        with pytest.raises(ValueError, match=r"\(H, W\)"):
            ssim(np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 1)))

    @pytest.mark.parametrize("shape", [(6, 30), (30, 6), (6, 6, 3)])
    def test_smaller_than_the_window_is_refused(self, shape):
        with pytest.raises(ValueError, match=r"at least 7×7 px .*got shape"):
            ssim(np.zeros(shape), np.zeros(shape))
        grown = tuple(7 if n == 6 else n for n in shape)
        assert ssim(np.zeros(grown), np.zeros(grown)) == pytest.approx(1.0)


@pytest.fixture
def flat_folder(tmp_path):
    """Two constant 0.3 images (PNG stores 77/255)."""
    for i in range(2):
        save_image(tmp_path / f"flat{i}.png", np.full((64, 64), 77 / 255, dtype=np.float32))
    return tmp_path


class TestEvaluate:
    def test_a_test_image_below_the_ssim_window_is_named_before_any_method_runs(self,
                                                                               flat_folder):
        save_image(flat_folder / "small.png", np.full((6, 40), 0.5, dtype=np.float32))
        calls = []
        with pytest.raises(ValueError, match=r"small\.png \(40×6 px\) is too small"):
            evaluate({"spy": lambda x: calls.append(x) or x}, flat_folder, 25)
        assert calls == []

    def test_hand_computed_psnr_and_output_clipping(self, flat_folder):
        clean = 77 / 255
        methods = {
            "half": lambda noisy: np.full_like(noisy, 0.5),
            "too_bright": lambda noisy: np.full_like(noisy, 2.0),  # must be clipped to 1
        }
        result = evaluate(methods, flat_folder, sigma=25, progress=False)
        expected_half = 10 * math.log10(1 / (0.5 - clean) ** 2)
        expected_clipped = 10 * math.log10(1 / (1.0 - clean) ** 2)
        assert result["mean"]["half"]["psnr"] == pytest.approx(expected_half, rel=1e-6)
        assert result["mean"]["too_bright"]["psnr"] == pytest.approx(expected_clipped, rel=1e-6)
        assert len(result["rows"]) == 2 * 3

    def test_noisy_input_not_clipped(self, tmp_path):
        # A black image: clipping the noise would remove half of it and raise the PSNR by ~3 dB.
        save_image(tmp_path / "black.png", np.zeros((128, 128), dtype=np.float32))
        result = evaluate({}, tmp_path, sigma=25, progress=False)
        assert result["mean"]["noisy"]["psnr"] == pytest.approx(20 * math.log10(255 / 25), abs=0.1)

    def test_fixed_seed_and_subset(self, flat_folder):
        ident = {"identity": lambda noisy: noisy}
        a = evaluate(ident, flat_folder, sigma=25, seed=3, progress=False)
        b = evaluate(ident, flat_folder, sigma=25, seed=3, progress=False)
        sub = evaluate(ident, flat_folder, sigma=25, seed=3, limit=1, progress=False)
        c = evaluate(ident, flat_folder, sigma=25, seed=4, progress=False)
        assert a["rows"][1]["psnr"] == b["rows"][1]["psnr"] == sub["rows"][1]["psnr"]
        assert a["rows"][1]["psnr"] != c["rows"][1]["psnr"]
        second = evaluate(ident, flat_folder, sigma=25, seed=3, skip=1, limit=1, progress=False)
        assert second["images"] == ["flat1.png"]
        assert second["rows"][1]["psnr"] == a["rows"][3]["psnr"]

    def test_table_and_files(self, flat_folder, tmp_path):
        result = evaluate({"half": lambda n: np.full_like(n, 0.5)}, flat_folder, 25, progress=False)
        table = format_table(result)
        assert "flat0.png" in table and "mean" in table and "half" in table
        csv_path, json_path = tmp_path / "out" / "r.csv", tmp_path / "out" / "r.json"
        write_results(result, csv_path, json_path)
        lines = csv_path.read_text().strip().splitlines()
        assert lines[0] == "image,method,psnr,ssim,seconds"
        assert len(lines) == 1 + 4 + 2  # header, 2 images x 2 methods, 2 mean rows
        assert json.loads(json_path.read_text())["mean"]["half"]["psnr"] == pytest.approx(
            result["mean"]["half"]["psnr"]
        )
