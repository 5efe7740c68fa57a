"""Image denoising with n3seq_image from Python: shipped N3Net vs DnCNN vs NL-means.

Denoises scikit-image's ``astronaut`` (as grayscale, and in colour channel by channel) at
σ = 25 and prints the PSNR of each method; then shows how to train a (tiny) model on your
own folder of images with the same code as ``n3seq-image train``.

Run: ``python examples/image_denoising.py [--train-on FOLDER]``.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
from skimage import color, data

from n3seq_image.checkpoint import load_model
from n3seq_image.data import add_noise
from n3seq_image.denoise import denoise_array, denoise_tensor, get_denoiser, shipped_weights
from n3seq_image.metrics import psnr, ssim
from n3seq_image.train import TrainConfig, train


def compare_methods(sigma: float = 25.0) -> None:
    rgb = data.astronaut()[100:356, 150:406].astype(np.float32) / 255.0  # 256×256 crop
    gray = color.rgb2gray(rgb).astype(np.float32)
    noisy = add_noise(gray, sigma, seed=0)  # not clipped, as in the benchmarks
    print(f"grayscale astronaut crop, sigma={sigma:g}: noisy PSNR {psnr(noisy, gray):.2f} dB")
    for name in ("n3net", "dncnn", "nlmeans"):
        out = get_denoiser(name, sigma)(noisy)  # output clipped to [0, 1]
        print(f"  {name:8s} PSNR {psnr(out, gray):.2f} dB  SSIM {ssim(out, gray):.4f}")

    # Colour: each channel is denoised as a grayscale image at the same sigma.
    noisy_rgb = add_noise(rgb, sigma, seed=1)
    out_rgb = denoise_array(get_denoiser("n3net", sigma), noisy_rgb)
    print(f"colour, per channel: noisy {psnr(noisy_rgb, rgb):.2f} dB -> "
          f"N3Net {psnr(out_rgb, rgb):.2f} dB")

    # The lower-level call: any model, tiled so that memory stays bounded on large images.
    model = load_model(shipped_weights("n3net"))
    raw = denoise_tensor(model, noisy, tile=512, overlap=48)  # unclipped network output
    print(f"denoise_tensor output range [{raw.min():.3f}, {raw.max():.3f}]")


def train_tiny(folder: str) -> None:
    """A 20-step run of a small DnCNN, just to show the API (real runs: see docs/image.md)."""
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            data=folder, out=out, model="dncnn", model_config={"depth": 5, "features": 16},
            sigma="25", steps=20, batch_size=8, crop=40, val_data=folder, val_every=10,
            checkpoint_every=10,
        )
        print(train(cfg))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-on", default=None, help="folder of grayscale images")
    args = parser.parse_args()
    compare_methods()
    if args.train_on:
        train_tiny(args.train_on)
