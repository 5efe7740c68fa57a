"""Shared helpers for the image tests: tiny images on disk and a tiny saved model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from n3seq_image import DnCNN
from n3seq_image.checkpoint import save_weights
from n3seq_image.data import save_image


def smooth_image(size: int, seed: int) -> np.ndarray:
    """A smooth random grayscale image in [0.1, 0.9] (easy to denoise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size))
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 3, size=3)
        img += np.sin(2 * np.pi * (fx * x + fy * y) + phase)
    img = (img - img.min()) / (img.max() - img.min() + 1e-9)
    return (0.1 + 0.8 * img).astype(np.float32)


def write_folder(folder: Path, count: int = 3, size: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        save_image(folder / f"img{i:02d}.png", smooth_image(size, i))
    return folder


def tiny_weights(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    save_weights(path, DnCNN(1, 1, depth=3, features=4), extra={"sigma": "25"})
    return path
