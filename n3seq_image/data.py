"""Image I/O and the random-crop training data for Gaussian denoising.

Images are float32 arrays in ``[0, 1]``: ``(H, W)`` for grayscale, ``(H, W, C)`` for colour.
Training samples are drawn *statelessly*: global sample number ``g`` of a run with seed ``s``
always gives the same image, crop, flip, rotation and noise (a NumPy generator seeded with
``[s, g]``). This makes resuming exact and lets ``N`` distributed processes share one global
batch without communication: each takes its own slice of the same sample numbers, exactly as
``DistributedSampler`` shards a dataset, so a 2-process run sees the samples of a 1-process run
with the combined batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """Raised when a file exists but cannot be decoded as an image."""


def load_image(path: str | Path, grayscale: bool = True) -> np.ndarray:
    """Reads a PNG/JPEG (8- or 16-bit) as float32 in ``[0, 1]``.

    Args:
        path: image file.
        grayscale: convert to one channel (ITU-R 601 luma, as PIL does); otherwise RGB images
            keep their 3 channels and grayscale files stay ``(H, W)``.

    Returns:
        ``(H, W)`` or ``(H, W, 3)`` float32 array.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float32) / 65535.0
                return np.clip(arr, 0.0, 1.0)
            if grayscale:
                img = img.convert("L")
            elif img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc
    return arr


def save_image(path: str | Path, image: np.ndarray) -> None:
    """Writes a ``[0, 1]`` float image as 8-bit PNG/JPEG atomically (temp file + rename).

    Values are clipped to ``[0, 1]`` and rounded. The file appears complete or not at all.
    """
    import os
    import tempfile

    from PIL import Image

    from n3seq_image.checkpoint import default_mode

    path = Path(path)
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got {arr.shape}")
    u8 = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF",
           ".tiff": "TIFF"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported output format {path.suffix!r} for {path}; use .png or .jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(u8).save(f, format=fmt)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files (PNG/JPEG/BMP/TIFF) directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def load_folder(folder: str | Path, limit: int | None = None) -> tuple[list[str], list[np.ndarray]]:
    """Loads the grayscale images of a folder (names and ``(H, W)`` arrays), sorted by name."""
    files = list_images(folder)[:limit]
    return [p.name for p in files], [load_image(p) for p in files]


def parse_sigma(sigma: float | str | Sequence[float]) -> tuple[float, float]:
    """Parses a noise level on the 0–255 scale: ``25``, ``"25"``, ``"0-55"`` or ``(0, 55)``.

    Returns:
        ``(low, high)``; equal for a fixed σ.

    Raises:
        ValueError: σ is not a number, negative, above 255, or the range is reversed.
    """
    if isinstance(sigma, str):
        text = sigma.strip()
        # "a-b" or "a:b" is a range; a leading "-" is a (rejected below) negative number.
        head, sep, tail = text[1:].replace(":", "-").partition("-")
        parts = [text[:1] + head, *([tail] if sep else [])]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"sigma must be a number or a range like '0-55', got {sigma!r}"
            ) from None
    elif isinstance(sigma, (int, float)):
        values = [float(sigma)]
    else:
        values = [float(s) for s in sigma]
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise ValueError(f"sigma must be one value or a (low, high) range, got {sigma!r}")
    low, high = values
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255 or low > high:
        raise ValueError(
            f"sigma must lie in [0, 255] (0–255 scale) with low <= high, got {sigma!r}"
        )
    return low, high


class RandomCropDataset:
    """Random-crop, flip/rotate, add-noise sampler over a folder of grayscale images.

    Sample ``g`` of seed ``s`` is a deterministic function of ``(s, g)``: a random image, a
    random ``crop × crop`` window, one of the 8 flips/90° rotations, and Gaussian noise with σ
    drawn uniformly from ``sigma`` (0–255 scale, applied to ``[0, 1]`` images without clipping).
    A share ``quantized_share`` of the samples is then clipped to ``[0, 1]`` and rounded to 8
    bits, as a user's noisy PNG is; the clean target is unchanged.

    Args:
        folder: image folder, or a list of ``(H, W)`` float arrays.
        crop: crop size in pixels (every image must be at least this large).
        sigma: fixed σ or ``(low, high)`` range on the 0–255 scale.
        seed: run seed.
        quantized_share: probability in ``[0, 1]`` that a sample's noisy image is clipped and
            quantised to 8 bits (0 keeps the streams of runs made before this option).

    Example:
        >>> ds = RandomCropDataset([np.zeros((100, 100), np.float32)], crop=80, sigma=25)
        >>> noisy, clean = ds.batch(range(4))
        >>> noisy.shape
        torch.Size([4, 1, 80, 80])
    """

    def __init__(
        self,
        folder: str | Path | Sequence[np.ndarray],
        crop: int = 80,
        sigma: float | str | Sequence[float] = 25.0,
        seed: int = 0,
        quantized_share: float = 0.0,
    ) -> None:
        if not 0.0 <= quantized_share <= 1.0:
            raise ValueError(f"quantized_share must lie in [0, 1], got {quantized_share!r}")
        if isinstance(folder, (str, Path)):
            _, images = load_folder(folder)
        else:
            images = [np.asarray(im, dtype=np.float32) for im in folder]
        if not images:
            raise ValueError("RandomCropDataset needs at least one image")
        if crop < 1:
            raise ValueError(f"crop must be >= 1, got {crop}")
        small = [i for i, im in enumerate(images) if min(im.shape[:2]) < crop]
        if small:
            raise ValueError(
                f"crop={crop} is larger than {len(small)} image(s), e.g. image #{small[0]} "
                f"of shape {images[small[0]].shape}"
            )
        self.images = images
        self.crop = crop
        self.sigma = parse_sigma(sigma)
        self.seed = seed
        self.quantized_share = float(quantized_share)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Global sample ``index`` → ``(noisy, clean)`` float32 arrays ``(crop, crop)``."""
        rng = np.random.default_rng([self.seed, int(index)])
        img = self.images[int(rng.integers(len(self.images)))]
        h, w = img.shape[:2]
        top = int(rng.integers(h - self.crop + 1))
        left = int(rng.integers(w - self.crop + 1))
        clean = img[top : top + self.crop, left : left + self.crop]
        clean = np.rot90(clean, k=int(rng.integers(4)))
        if rng.integers(2):
            clean = clean[:, ::-1]
        clean = np.ascontiguousarray(clean, dtype=np.float32)
        sigma = rng.uniform(*self.sigma) if self.sigma[0] < self.sigma[1] else self.sigma[0]
        noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(sigma / 255.0)
        noisy = clean + noise
        # Drawn after the noise so that quantized_share = 0 keeps older runs' sample streams.
        if self.quantized_share > 0 and rng.random() < self.quantized_share:
            noisy = quantize_8bit(noisy)
        return noisy, clean

    def batch(self, indices: Sequence[int] | range) -> tuple[Tensor, Tensor]:
        """Stacks samples into ``(noisy, clean)`` tensors of shape ``(B, 1, crop, crop)``."""
        pairs = [self.sample(i) for i in indices]
        noisy = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
        clean = torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None]
        return noisy, clean


def shard_indices(step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> range:
    """Global sample numbers of this rank's share of global batch ``step``.

    The global batch ``step`` holds samples ``step·batch_size … (step+1)·batch_size − 1``; rank
    ``r`` of ``W`` takes the contiguous ``r``-th of ``W`` equal parts (``batch_size`` must be a
    multiple of ``W``), so the union over ranks is the 1-process batch.
    """
    if batch_size % world_size:
        raise ValueError(
            f"batch_size ({batch_size}) must be a multiple of the world size ({world_size})"
        )
    per_rank = batch_size // world_size
    start = step * batch_size + rank * per_rank
    return range(start, start + per_rank)


def add_noise(image: np.ndarray, sigma: float, seed: int | Sequence[int]) -> np.ndarray:
    """Adds N(0, (σ/255)²) noise to a ``[0, 1]`` image, reproducibly, without clipping."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(image.shape).astype(np.float32) * np.float32(sigma / 255.0)
    return image.astype(np.float32) + noise


def quantize_8bit(image: np.ndarray) -> np.ndarray:
    """Clips a float image to ``[0, 1]`` and rounds it to the 256 levels of an 8-bit file."""
    return (np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)
