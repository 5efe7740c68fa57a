"""estimate_sigma: the blind denoiser's noise-level estimator."""

from __future__ import annotations

import numpy as np
import pytest

from n3seq_image.data import add_noise, load_folder
from n3seq_image.noise_level import estimate_sigma
from tests.image._helpers import smooth_image


class TestEstimateSigma:
    @pytest.mark.parametrize("sigma", [3.0, 12.0, 30.0, 60.0])
    def test_smooth_image(self, sigma):
        clean = smooth_image(128, 0)
        noisy = add_noise(clean, sigma, seed=1)
        assert estimate_sigma(noisy) == pytest.approx(sigma, abs=0.05 * sigma + 0.3)

    def test_noise_free_constant_image_is_zero(self):
        assert estimate_sigma(np.full((64, 64), 0.5, np.float32)) == pytest.approx(0.0, abs=1e-6)

    def test_texture_is_not_noise(self):
        # a strong, fine texture with little noise: a global variance estimate would be large
        y, x = np.mgrid[0:128, 0:128]
        texture = (0.5 + 0.4 * np.sin(x * 1.3) * np.cos(y * 0.7)).astype(np.float32)
        noisy = add_noise(texture, 5.0, seed=2)
        assert abs(estimate_sigma(noisy) - 5.0) < 1.5
        assert np.std(noisy - texture.mean()) * 255 > 50  # a naive estimate would fail

    def test_colour_averages_channels(self):
        clean = np.stack([smooth_image(96, i) for i in range(3)], axis=-1)
        noisy = add_noise(clean, 20.0, seed=3)
        per_channel = [estimate_sigma(noisy[..., c]) for c in range(3)]
        assert estimate_sigma(noisy) == pytest.approx(np.mean(per_channel))

    @pytest.mark.parametrize(("image", "match"), [
        (np.zeros((5, 64, 64, 3), np.float32), "shape"),
        (np.zeros((10, 64), np.float32), "too small"),
        (np.full((64, 64), np.nan, np.float32), "NaN"),
    ])
    def test_exceptions(self, image, match):
        with pytest.raises(ValueError, match=match):
            estimate_sigma(image)

    @pytest.mark.data
    @pytest.mark.parametrize("sigma", [5, 10, 15, 25, 35, 50])
    def test_set12_within_1_5(self, shared_data, sigma):
        names, images = load_folder(shared_data / "set12")
        errors = {
            name: estimate_sigma(add_noise(img, sigma, seed=[sigma, i])) - sigma
            for i, (name, img) in enumerate(zip(names, images))
        }
        worst = max(errors, key=lambda n: abs(errors[n]))
        assert abs(errors[worst]) <= 1.5, f"{worst}: error {errors[worst]:+.2f} at sigma={sigma}"
