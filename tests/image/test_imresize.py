"""MATLAB-compatible bicubic imresize: hand-computed weights, resize-right, PIL, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from n3seq_image.imresize import contributions, cubic, imresize, output_size

# Interior weights of MATLAB's bicubic ×2 upscaling (kernel at distances 1.75, 0.75, 0.25,
# 1.25) and of ×1/2 downscaling (0.5·cubic(0.5·d) at d = ±0.5, ±1.5, ±2.5, ±3.5).
UP2 = [-0.0234375, 0.2265625, 0.8671875, -0.0703125]
DOWN2_HALF = [-0.01171875, -0.03515625, 0.11328125, 0.43359375]


def _rng():
    return np.random.default_rng(12)


class TestKernel:
    def test_cubic_values(self):
        x = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, -0.5])
        expected = [1.0, 0.8671875, 0.5625, 0.2265625, 0.0, -0.0703125, -0.0625, -0.0234375,
                    0.0, 0.0, 0.5625]
        np.testing.assert_allclose(cubic(x), expected, rtol=0, atol=1e-15)

    def test_upscale_interior_weights(self):
        w, idx = contributions(10, 20, 2.0)
        # Output pixel 10 (1-based) samples u = 10/2 + 0.25 = 5.25: inputs 4, 5, 6, 7 (1-based).
        # Distances 1.25, 0.25, −0.75, −1.75.
        row = {int(i): float(v) for i, v in zip(idx[9], w[9]) if v != 0}
        assert row == pytest.approx({3: UP2[3], 4: UP2[2], 5: UP2[1], 6: UP2[0]}, abs=1e-15)
        # The next output pixel mirrors it (u = 5.75).
        row = {int(i): float(v) for i, v in zip(idx[10], w[10]) if v != 0}
        assert row == pytest.approx({3: UP2[0], 4: UP2[1], 5: UP2[2], 6: UP2[3]}, abs=1e-15)

    def test_downscale_interior_weights_are_antialiased(self):
        w, idx = contributions(20, 10, 0.5)
        # Output pixel 5 (1-based) samples u = 2·5 − 0.5 = 9.5: inputs 6 … 13 (1-based).
        row = {int(i): float(v) for i, v in zip(idx[4], w[4]) if v != 0}
        expected = dict(zip(range(5, 13), [*DOWN2_HALF, *DOWN2_HALF[::-1]]))
        assert row == pytest.approx(expected, abs=1e-15)
        # Without antialiasing the plain kernel is sampled at ±0.5, ±1.5 instead.
        w, idx = contributions(20, 10, 0.5, antialias=False)
        row = {int(i): float(v) for i, v in zip(idx[4], w[4]) if v != 0}
        assert row == pytest.approx({7: -0.0625, 8: 0.5625, 9: 0.5625, 10: -0.0625}, abs=1e-15)

    def test_first_pixel_mirrors_the_edge(self):
        # u = 0.75 for output pixel 1 of ×2: taps at 1-based −1, 0, 1, 2 fold to 2, 1, 1, 2.
        x = torch.tensor([[0.3, 0.9, 0.1, 0.5]], dtype=torch.float64)
        out = imresize(x, size=(1, 8))
        a, b = 0.3, 0.9
        expected = (UP2[0] + UP2[3]) * b + (UP2[1] + UP2[2]) * a
        assert out[0, 0].item() == pytest.approx(expected, abs=1e-15)
        assert expected == pytest.approx(1.09375 * a - 0.09375 * b, abs=1e-15)

    def test_weights_sum_to_one_and_zero_columns_are_dropped(self):
        for n_in, n_out, scale in [(9, 3, 1 / 3), (7, 28, 4.0), (5, 2, 0.4), (3, 1, 1 / 3)]:
            w, idx = contributions(n_in, n_out, scale)
            np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-14)
            assert np.all(np.any(w != 0, axis=0))
            assert idx.min() >= 0 and idx.max() < n_in

    def test_tiny_input_mirrors_periodically(self):
        # A 1-pixel image: every tap folds onto it, so any resize is constant.
        out = imresize(torch.full((1, 1), 0.7, dtype=torch.float64), 4)
        torch.testing.assert_close(out, torch.full((4, 4), 0.7, dtype=torch.float64))


class TestAgainstResizeRight:
    """resize-right (numpy path, symmetric padding) is an independent implementation."""

    @pytest.mark.parametrize(("shape", "scale"), [
        ((24, 36), 1 / 2), ((27, 18), 1 / 3), ((32, 24), 1 / 4), ((10, 7), 2), ((6, 9), 3),
        ((5, 5), 4), ((2, 3), 4), ((255, 120), 1 / 3),
    ])
    def test_matches_in_float64(self, shape, scale):
        resize_right = pytest.importorskip("resize_right")
        x = _rng().random(shape)
        ours = imresize(torch.from_numpy(x), scale).numpy()
        theirs = resize_right.resize(x, scale_factors=scale, pad_mode="symmetric")
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-13)

    def test_batched_channels_and_float32(self):
        resize_right = pytest.importorskip("resize_right")
        x = _rng().random((2, 3, 24, 18))
        ours = imresize(torch.from_numpy(x).float(), 1 / 3)
        assert ours.dtype == torch.float32 and ours.shape == (2, 3, 8, 6)
        for b in range(2):
            for c in range(3):
                theirs = resize_right.resize(x[b, c], scale_factors=1 / 3, pad_mode="symmetric")
                np.testing.assert_allclose(ours[b, c].numpy(), theirs, rtol=0, atol=2e-6)

    def test_round_trip_matches(self):
        resize_right = pytest.importorskip("resize_right")
        x = _rng().random((48, 60))
        ours = imresize(imresize(torch.from_numpy(x), 1 / 4), 4).numpy()
        theirs = resize_right.resize(
            resize_right.resize(x, scale_factors=1 / 4, pad_mode="symmetric"),
            scale_factors=4, pad_mode="symmetric")
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-13)


class TestPIL:
    def test_pil_bicubic_is_another_function(self):
        """PIL's float bicubic has MATLAB's interior but not its boundary rule."""
        from PIL import Image

        x = _rng().random((48, 48)).astype(np.float32)
        for size in [(24, 24), (96, 96), (16, 16)]:
            ours = imresize(torch.from_numpy(x).double(), size=size).numpy()
            pil = np.asarray(Image.fromarray(x, mode="F").resize(size[::-1], Image.BICUBIC))
            inner = (slice(4, -4), slice(4, -4))
            assert np.abs(ours - pil)[inner].max() < 1e-6
            assert np.abs(ours - pil).max() > 1e-2


class TestInterface:
    def test_size_and_scale_agree_when_divisible(self):
        x = torch.from_numpy(_rng().random((3, 30, 24)))
        torch.testing.assert_close(imresize(x, 1 / 3), imresize(x, size=(10, 8)))
        torch.testing.assert_close(imresize(x, (2, 3)), imresize(x, size=(60, 72)))

    def test_identity_scale_is_a_copy(self):
        x = torch.rand(5, 6, dtype=torch.float64)
        y = imresize(x, 1)
        torch.testing.assert_close(y, x)
        assert y.data_ptr() != x.data_ptr()

    def test_output_size_tolerates_rounding(self):
        assert output_size(255, 1 / 3) == 85
        assert output_size(10, 1 / 3) == 4
        assert output_size(7, 2.5) == 18

    def test_float64_keeps_precision(self):
        x = torch.from_numpy(_rng().random((16, 16)))
        y64 = imresize(x, 1 / 2)
        y32 = imresize(x.float(), 1 / 2).double()
        assert y64.dtype == torch.float64
        assert 1e-9 < (y64 - y32).abs().max().item() < 1e-5

    @pytest.mark.parametrize(("kwargs", "error", "match"), [
        ({"scale": 2, "size": (4, 4)}, ValueError, "exactly one"),
        ({}, ValueError, "exactly one"),
        ({"scale": 0}, ValueError, "scale must be finite and > 0"),
        ({"scale": float("nan")}, ValueError, "scale must be finite"),
        ({"scale": (2, 3, 4)}, ValueError, "scale must be a number or a"),
        ({"size": (4, 0)}, ValueError, "size must be a"),
        ({"size": (4.0, 4)}, ValueError, "size must be a"),
    ])
    def test_bad_arguments(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            imresize(torch.rand(4, 4), **kwargs)

    def test_integer_and_non_tensor_input_rejected(self):
        with pytest.raises(TypeError, match="floating-point"):
            imresize(torch.zeros(4, 4, dtype=torch.uint8), 2)
        with pytest.raises(TypeError, match="torch.Tensor"):
            imresize(np.zeros((4, 4)), 2)
        with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
            imresize(torch.zeros(4), 2)
