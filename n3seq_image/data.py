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

import errno
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from n3seq._checks import check_bool, check_int, check_optional_int, check_real
from n3seq._files import atomic_write
from n3seq_image._sigma import parse_sigma

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """Raised when a file exists but cannot be decoded as an image."""


#: PIL modes read as grayscale; everything else is read as RGB (plus alpha where present).
_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF",
            ".tiff": "TIFF"}
#: Output formats that store an alpha channel / 16-bit grey / float grey (Pillow's writers).
_ALPHA_FORMATS = ("PNG", "TIFF")
_WIDE_FORMATS = ("PNG", "TIFF")
#: A floating-point image (PIL mode ``F``) is taken on the ``[0, 1]`` scale; noisy values a
#: little outside are kept, values beyond this margin mean another scale and are refused.
_FLOAT_MARGIN = 1.0


def read_image(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Reads an image of any PIL mode with its alpha channel and bit depth.

    ========================  ==========================================================
    PIL mode                  result
    ========================  ==========================================================
    ``1``, ``L``              grey, ``/ 1`` or ``/ 255``; depth 8
    ``I;16*``                 grey ``/ 65535``; depth 16
    ``I`` (32-bit integer)    grey ``/ 65535`` (16-bit PNGs open as ``I``); values outside
                              ``[0, 65535]`` are refused
    ``F`` (32-bit float)      grey as stored (``[0, 1]`` scale); depth 32; NaN/inf and
                              values far outside ``[0, 1]`` are refused
    ``LA``, ``La``            grey + alpha; depth 8
    ``RGB``, ``RGBX``         colour ``/ 255``; depth 8
    ``RGBA``, ``RGBa``,       colour + alpha; depth 8
    ``PA``, ``P`` with
    transparency
    ``P``, ``CMYK``, others   converted to RGB by PIL; depth 8
    ========================  ==========================================================

    Returns:
        ``(pixels, alpha, depth)``: ``pixels`` is float32 ``(H, W)`` (grey) or ``(H, W, 3)``;
        ``alpha`` is float32 ``(H, W)`` in ``[0, 1]`` or ``None``; ``depth`` is the bits per
        sample of the source (8, 16, or 32 for floating point).

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file is not a readable image, or its values are not finite or on
            an unknown scale.
    """
    path = Path(path)
    with _open_image(path) as img:
        return _pixels(img, path)


def _pixels(img: Any, path: Path) -> tuple[np.ndarray, np.ndarray | None, int]:
    """:func:`read_image` of an opened PIL image."""
    mode = img.mode
    if mode in ("La", "PA", "RGBa") or (mode == "P" and _has_transparency(img)):
        img = img.convert("LA" if mode == "La" else "RGBA")
    elif mode not in (*_GREY_MODES, "RGB", "RGBA"):
        img = img.convert("RGB")
    arr = np.asarray(img)
    mode = img.mode
    alpha = None
    if mode in ("LA", "RGBA"):
        alpha = arr[..., -1].astype(np.float32) / 255.0
        arr = arr[..., :-1] if mode == "RGBA" else arr[..., 0]
    if mode == "1":
        return arr.astype(np.float32), alpha, 8
    if mode.startswith("I;16"):
        return arr.astype(np.float32) / 65535.0, alpha, 16
    if mode == "I":
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 65535:
            raise ImageReadError(
                f"cannot read image {path}: 32-bit integer pixels in [{low}, {high}] are "
                "outside the 16-bit range [0, 65535]; save it as 8- or 16-bit"
            )
        return arr.astype(np.float32) / 65535.0, alpha, 16
    if mode == "F":
        arr = arr.astype(np.float32)
        bad = ~np.isfinite(arr)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ImageReadError(
                f"cannot read image {path}: {int(bad.sum())} pixel(s) are NaN or infinite "
                f"(first at row {first[0]}, column {first[1]}: {arr[first]})"
            )
        low, high = float(arr.min()), float(arr.max())
        if low < -_FLOAT_MARGIN or high > 1.0 + _FLOAT_MARGIN:
            raise ImageReadError(
                f"cannot read image {path}: floating-point pixels in [{low:g}, {high:g}]; "
                "float images must be on the [0, 1] scale (divide 8-bit values by 255)"
            )
        return arr, alpha, 32
    return arr.astype(np.float32) / 255.0, alpha, 8


def _has_transparency(img: object) -> bool:
    info = getattr(img, "info", {})
    palette = getattr(img, "palette", None)
    return "transparency" in info or getattr(palette, "mode", "") == "RGBA"


def _open_image(path: Path, decode: bool = True) -> Any:
    """Opens an image file, turning every decoder failure into one error.

    With ``decode`` the pixels are read and the EXIF orientation applied; without it only the
    header is read (the caller closes the returned image).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if not path.is_file():
        raise ImageReadError(f"cannot read image {path}: not a file")
    try:
        img = Image.open(path)
        if decode:
            img.load()
            # Pixels as displayed: a camera's EXIF orientation is applied (the output, written
            # without EXIF, would otherwise show rotated).
            img = ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc
    return img


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header, without decoding the pixels
    (as stored: an EXIF rotation would swap the two).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageReadError: ``path`` is not an image file PIL can identify.
    """
    with _open_image(Path(path), decode=False) as img:
        width, height = img.size
    return height, width


def load_image(path: str | Path, grayscale: bool = True) -> np.ndarray:
    """Reads an image file as float32 in ``[0, 1]`` (any PIL mode, see :func:`read_image`).

    Args:
        path: image file.
        grayscale: convert colour to one channel (ITU-R 601 luma, as PIL does); otherwise
            colour images keep their 3 channels and grayscale files stay ``(H, W)``. The alpha
            channel is dropped (use :func:`read_image` to keep it).

    Returns:
        ``(H, W)`` or ``(H, W, 3)`` float32 array.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file is not a readable image.
    """
    grayscale = check_bool("grayscale", grayscale)
    path = Path(path)
    with _open_image(path) as img:
        if grayscale and img.mode not in _GREY_MODES:
            # 8-bit colour: PIL's own luma conversion, rounded to 8 bits.
            return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        return _pixels(img, path)[0]


def _output_format(path: Path) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"unsupported output format {path.suffix!r} for {path}; use .png, .tif, .jpg or .bmp"
        )
    return fmt


def check_image_output(path: str | Path, alpha: bool = False) -> str:
    """The PIL format for writing ``path``; refuses what that format cannot store.

    Raises:
        ValueError: unknown suffix, or an alpha channel for JPEG/BMP.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"output {str(path)!r} is a folder, not a file")
    fmt = _output_format(path)
    if alpha and fmt not in _ALPHA_FORMATS:
        raise ValueError(
            f"{fmt} cannot store the alpha (transparency) channel of the image; write "
            f"{path.with_suffix('.png').name} or .tif instead of {path.name}"
        )
    return fmt


def save_image(path: str | Path, image: np.ndarray, alpha: np.ndarray | None = None,
               depth: int = 8) -> None:
    """Writes a ``[0, 1]`` float image atomically (temp file + rename).

    Values are clipped to ``[0, 1]`` and rounded. The file appears complete or not at all.

    Args:
        path: output file; the format follows the suffix (PNG, TIFF, JPEG, BMP).
        image: ``(H, W)`` grey (written as a grey file) or ``(H, W, C)`` colour.
        alpha: optional ``(H, W)`` alpha channel in ``[0, 1]`` (PNG and TIFF only).
        depth: bits per sample wanted: 8; 16 writes grey images without alpha as 16-bit
            PNG/TIFF; 32 writes them as floating-point TIFF (16-bit PNG). Other cases, which
            the formats (or Pillow) cannot store, are written with 8 bits.

    Raises:
        TypeError: ``image`` is not a float array.
        ValueError: bad shape, NaN/inf values, unknown format, alpha for JPEG/BMP.
    """
    from PIL import Image

    path = Path(path)
    arr = np.asarray(image)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"image must be a float array on the [0, 1] scale, got dtype {arr.dtype} "
                        "(divide 8-bit values by 255)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"image must have shape (H, W) or (H, W, 3), got {arr.shape}")
    fmt = check_image_output(path, alpha=alpha is not None)
    _check_finite(arr, f"image to write to {path}")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.shape != arr.shape[:2]:
            raise ValueError(f"alpha must have shape {arr.shape[:2]}, got {alpha.shape}")
        _check_finite(alpha, f"alpha channel to write to {path}")
    clipped = np.clip(arr, 0.0, 1.0)
    if arr.ndim == 2 and alpha is None and depth == 32 and fmt == "TIFF":
        pil = Image.fromarray(clipped.astype(np.float32))
    elif arr.ndim == 2 and alpha is None and depth > 8 and fmt in _WIDE_FORMATS:
        pil = Image.fromarray(np.round(clipped * 65535.0).astype(np.uint16))
    else:
        u8 = np.round(clipped * 255.0).astype(np.uint8)
        if alpha is not None:
            a8 = np.round(np.clip(alpha, 0.0, 1.0) * 255.0).astype(np.uint8)
            u8 = np.concatenate([u8.reshape(*u8.shape[:2], -1), a8[..., None]], axis=-1)
        pil = Image.fromarray(u8)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            pil.save(f, format=fmt)

    atomic_write(path, write)


def _check_finite(arr: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what} has {int(bad.sum())} NaN/inf value(s), first at {first}: "
                         f"{arr[first]}")


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files (PNG/JPEG/BMP/TIFF) directly inside ``folder``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{folder} is a file, not an image folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def load_folder(folder: str | Path, limit: int | None = None) -> tuple[list[str], list[np.ndarray]]:
    """Loads the grayscale images of a folder (names and ``(H, W)`` arrays), sorted by name."""
    limit = check_optional_int("limit", limit, min=0)
    files = list_images(folder)[:limit]
    return [p.name for p in files], [load_image(p) for p in files]


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
    step = check_int("step", step, min=0)
    world_size = check_int("world_size", world_size, min=1)
    batch_size = check_int("batch_size", batch_size, min=1)
    rank = check_int("rank", rank, min=0, max=world_size - 1)
    if batch_size % world_size:
        raise ValueError(
            f"batch_size ({batch_size}) must be a multiple of the world size ({world_size})"
        )
    per_rank = batch_size // world_size
    start = step * batch_size + rank * per_rank
    return range(start, start + per_rank)


def add_noise(image: np.ndarray, sigma: float, seed: int | Sequence[int]) -> np.ndarray:
    """Adds N(0, (σ/255)²) noise to a ``[0, 1]`` image, reproducibly, without clipping.

    Raises:
        TypeError: ``image`` is not a float array, ``sigma`` not a number, ``seed`` not an
            int (or sequence of ints).
        ValueError: ``sigma`` is negative or not finite, ``seed`` is negative.
    """
    _check_float_array(image, "image")
    sigma = check_real("sigma", sigma)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 (0-255 scale), got {sigma}")
    for s in (seed if isinstance(seed, (list, tuple)) else [seed]):
        check_int("seed", s, min=0)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(image.shape).astype(np.float32) * np.float32(sigma / 255.0)
    return image.astype(np.float32) + noise


def quantize_8bit(image: np.ndarray) -> np.ndarray:
    """Clips a float image to ``[0, 1]`` and rounds it to the 256 levels of an 8-bit file.

    Raises:
        TypeError: ``image`` is not a float array.
        ValueError: ``image`` has NaN values (they have no 8-bit level).
    """
    _check_float_array(image, "image")
    if np.isnan(image).any():
        first = tuple(int(i) for i in np.argwhere(np.isnan(image))[0])
        raise ValueError(f"image contains NaN (first at index {first}); it has no 8-bit level")
    return (np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def _check_float_array(image: object, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype.kind != "f":
        what = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise TypeError(f"{name} must be a float NumPy array on the [0, 1] scale, got {what}")
