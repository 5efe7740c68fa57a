"""Denoising whole images with a network (tiled) or a classical baseline.

Networks see ``(1, 1, H, W)`` grayscale tensors in ``[0, 1]``. Colour images are denoised
**per channel** (R, G and B separately, each as a grayscale image at the same σ): the shipped
models are grayscale, and per-channel denoising is what the N³ paper's grayscale models allow.
Large images are processed in overlapping tiles blended with linear ramps, so memory stays
bounded whatever the image size; images smaller than the model's minimum size (80 px for
N3Net, whose search window spans 80×80 pixels) are reflect-padded and cropped back.

Networks run in the arithmetic of ``precision`` (:mod:`n3seq_image.precision`): ``"auto"``,
the default of :func:`get_denoiser` and :func:`denoise_file`, runs the convolutions under
bfloat16 autocast where the device supports it natively and in float32 elsewhere; outputs are
always float32. Without a σ, :func:`denoise_file` estimates it
(:func:`~n3seq_image.noise_level.estimate_sigma`) and uses the blind N3Net where shipped.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from n3seq._checks import check_real
from n3seq._files import check_output_path
from n3seq_image.checkpoint import load_model, read_weights
from n3seq_image.data import add_noise, check_image_output, parse_sigma, read_image, save_image
from n3seq_image.memory_format import preferred_memory_format
from n3seq_image.metrics import psnr
from n3seq_image.n3net import N3Net
from n3seq_image.noise_level import estimate_sigma
from n3seq_image.precision import autocast, autocast_dtype

WEIGHTS_DIR = Path(__file__).parent / "weights"
BLIND = "n3net-blind"
SIGMA25 = "n3net-sigma25"
SHIPPED = {"n3net": "n3net_sigma25.safetensors", SIGMA25: "n3net_sigma25.safetensors",
           "dncnn": "dncnn17_sigma25.safetensors", BLIND: "n3net_blind.safetensors"}
#: ``denoise`` with ``model="n3net"`` runs the σ = 25 N3Net only for a given σ this close to
#: 25, the blind N3Net otherwise: on Set12 the σ = 25 network is 0.37 dB ahead of the blind
#: one at σ = 25 but 0.35 dB behind at σ = 20 and 2.2 dB behind at σ = 30 (docs/image.md).
SIGMA25_BAND = 1.0
MIN_SIZE = 80
CLASSICAL = ("nlmeans", "bm3d")
Denoiser = Callable[[np.ndarray], np.ndarray]


def resolve_device(device: str | torch.device) -> torch.device:
    """Checks that ``device`` names a device this machine has (``cpu``, ``cuda[:N]``, ``mps``).

    Raises:
        ValueError: an unknown device string, or a GPU that is not available here.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: no CUDA GPU is available on this machine "
                             "(torch.cuda.is_available() is False); use cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {str(device)!r}: this machine has {count} CUDA GPU(s) "
                             f"(cuda:0 … cuda:{count - 1})")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {str(device)!r}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise ValueError(f"device {str(device)!r} is not supported; use cpu, cuda, cuda:N or mps")
    return dev


def check_image_values(image: object, name: str = "image") -> None:
    """Raises unless ``image`` is a non-empty real NumPy array without NaN/inf.

    The message names ``name`` and the first bad pixel ``(y, x[, c])`` and its value.
    """
    if not isinstance(image, np.ndarray) or image.dtype.kind not in "uif":
        what = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise TypeError(f"{name} must be a real-valued NumPy array, got {what}")
    if image.size == 0:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    bad = ~np.isfinite(image)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} contains {int(bad.sum())} NaN/inf pixel value(s) (first at "
                         f"(y, x{', c' if image.ndim == 3 else ''}) = {first}, value "
                         f"{image[first]})")


def check_grey_image(image: object, name: str = "image") -> None:
    """:func:`check_image_values` for an ``(H, W)`` image."""
    if isinstance(image, np.ndarray) and image.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W), got {image.shape}")
    check_image_values(image, name)


def check_tiling(tile: int, overlap: int) -> None:
    """Raises ``ValueError`` unless ``tile >= 80`` and ``0 <= overlap < tile / 2`` (ints)."""
    for name, value in (("tile", tile), ("overlap", overlap)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if tile < MIN_SIZE:
        raise ValueError(f"tile must be >= {MIN_SIZE}, got {tile}")
    if not 0 <= overlap < tile / 2:
        raise ValueError(f"overlap must be in [0, tile/2), got {overlap} for tile {tile}")


def shipped_weights(name: str = "n3net") -> Path:
    """Path of a weights file shipped with the package.

    Args:
        name: ``"n3net"`` (also ``"n3net-sigma25"``) or ``"dncnn"`` (σ = 25), or
            ``"n3net-blind"`` (trained on a range of σ; see :func:`blind_available`).

    Raises:
        ValueError: an unknown ``name``.
        FileNotFoundError: the file is missing (for ``"n3net-blind"``: not shipped yet).
    """
    if name not in SHIPPED:
        raise ValueError(f"no shipped weights named {name!r}; choose one of {sorted(SHIPPED)}")
    path = WEIGHTS_DIR / SHIPPED[name]
    if not path.is_file():
        if name == BLIND:
            raise FileNotFoundError(
                f"the blind N3Net weights are not shipped yet ({path} is absent); use "
                "--model n3net (sigma = 25) or a weights file trained with --sigma 0-55"
            )
        raise FileNotFoundError(f"shipped weights missing: {path} (reinstall the package)")
    return path


def blind_available() -> bool:
    """True when the blind N3Net (``"n3net-blind"``) is shipped with the package."""
    return (WEIGHTS_DIR / SHIPPED[BLIND]).is_file()


def tile_spans(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """The tiles that cover ``[0, length)``: their common size and their start offsets.

    The fewest tiles of at most ``tile`` px whose neighbours overlap by at least ``overlap``,
    spread evenly and made as small as that allows (never under the 80-px minimum and more
    than ``2 * overlap``), so that no tile is mostly a re-run of its neighbour: a 1024-px side
    with ``tile=512, overlap=48`` takes 3 tiles of 374 px rather than 3 of 512.

    Args:
        length: the side to cover (``>= 1``).
        tile: the largest tile side.
        overlap: the least overlap of neighbouring tiles (``0 <= overlap < tile / 2``).

    Returns:
        ``(size, starts)``: one tile ``[0, length)`` when ``length <= tile``, else tiles
        ``[s, s + size)`` for each ``s`` in ``starts``; the first starts at 0 and the last
        ends at ``length``.

    Raises:
        ValueError: ``length < 1``, or ``tile``/``overlap`` as :func:`check_tiling` refuses.
    """
    check_tiling(tile, overlap)
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length must be an int >= 1, got {length!r}")
    if length <= tile:
        return length, [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = max(math.ceil((length + (count - 1) * overlap) / count), MIN_SIZE, 2 * overlap + 1)
    size = min(size, tile)
    return size, [round(i * (length - size) / (count - 1)) for i in range(count)]


def _ramp(size: int, overlap: int) -> np.ndarray:
    """1-D blending weights: linear ramps of ``overlap`` px at both ends, 1 inside, > 0."""
    x = np.arange(size, dtype=np.float64)
    if overlap <= 0:
        return np.ones(size)
    up = np.clip((x + 1) / (overlap + 1), 0, 1)
    return np.minimum(up, up[::-1])


@torch.no_grad()
def denoise_tensor(
    model: nn.Module,
    image: np.ndarray,
    tile: int = 512,
    overlap: int = 48,
    device: str | torch.device = "cpu",
    progress: bool = False,
    precision: str = "float32",
) -> np.ndarray:
    """Runs ``model`` on an ``(H, W)`` image in overlapping tiles; returns the raw output.

    Args:
        model: network mapping ``(1, 1, h, w)`` → ``(1, 1, h, w)``.
        image: grayscale float image (noisy, unclipped).
        tile: the largest tile side in pixels (>= 80); images up to ``tile`` per side go in
            one piece, larger ones in the fewest evenly spread tiles (:func:`tile_spans`).
        overlap: overlap of neighbouring tiles; the outputs are blended with linear ramps.
        device: where the model runs (the model is moved there, in place, in the
            :func:`~n3seq_image.memory_format.preferred_memory_format` of the device).
        progress: show a progress bar of the tiles on stderr (when there are several; an
            image in one piece shows none). The tiles and their blending are the same either
            way.
        precision: ``"float32"`` (the default here: the raw network), ``"bfloat16"``
            (bfloat16 autocast for the convolutions) or ``"auto"`` (bfloat16 where the
            device supports it natively, see :func:`~n3seq_image.precision.autocast_dtype`).

    Returns:
        ``(H, W)`` float32 array, not clipped (float32 whatever the ``precision``).

    Raises:
        ValueError: ``image`` is not 2-D, bad ``tile``/``overlap``, an unknown
            ``precision``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_grey_image(image)
    check_tiling(tile, overlap)
    device = resolve_device(device)
    autocast_dtype(precision, device)  # an unknown precision is named before any work
    h0, w0 = image.shape
    pad_h, pad_w = max(0, MIN_SIZE - h0), max(0, MIN_SIZE - w0)
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w)), mode="symmetric")
    h, w = image.shape
    fmt = preferred_memory_format(device)
    model = model.to(device, memory_format=fmt).eval()

    def run(array: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
        with autocast(precision, device):
            y = model(x.to(device).contiguous(memory_format=fmt))
        return y[0, 0].float().cpu().numpy()

    if h <= tile and w <= tile:
        return run(image)[:h0, :w0]
    acc = np.zeros((h, w), dtype=np.float64)
    norm = np.zeros((h, w), dtype=np.float64)
    from tqdm.auto import tqdm

    (th, tops), (tw, lefts) = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)
    corners = [(top, left) for top in tops for left in lefts]
    for top, left in tqdm(corners, desc="tiles", disable=not progress, file=sys.stderr,
                          leave=False):
        y = run(image[top : top + th, left : left + tw])
        weight = np.outer(_ramp(th, overlap), _ramp(tw, overlap))
        acc[top : top + th, left : left + tw] += weight * y
        norm[top : top + th, left : left + tw] += weight
    return (acc / norm).astype(np.float32)[:h0, :w0]


def nlmeans_denoiser(sigma: float) -> Denoiser:
    """scikit-image non-local means (fast mode, 5×5 patches, 13×13 search, h = 0.6σ)."""
    from skimage.restoration import denoise_nl_means

    s = check_real("sigma", sigma, positive=True) / 255.0

    def run(img: np.ndarray) -> np.ndarray:
        out = denoise_nl_means(
            img.astype(np.float64), h=0.6 * s, sigma=s, fast_mode=True, patch_size=5,
            patch_distance=6,
        )
        return np.asarray(out, dtype=np.float32).reshape(img.shape)  # 1×1 comes back 0-d

    return run


def bm3d_available() -> bool:
    """True when the optional ``bm3d`` package can be imported."""
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


#: The ``bm3d`` package's block side.
BM3D_BLOCK = 8


def bm3d_denoiser(sigma: float) -> Denoiser:
    """BM3D from the ``bm3d`` package (``pip install bm3d``)."""
    try:
        import bm3d
    except ImportError as exc:
        raise ImportError("BM3D needs the optional package: pip install bm3d") from exc
    s = check_real("sigma", sigma, positive=True) / 255.0

    def denoise(img: np.ndarray) -> np.ndarray:
        height, width = np.shape(img)[:2]
        # the package's C code raises below its 8×8 block and crashes the process at exactly 8×8
        if min(height, width) < BM3D_BLOCK or (height, width) == (BM3D_BLOCK, BM3D_BLOCK):
            raise ValueError(
                f"bm3d needs an image larger than {BM3D_BLOCK}×{BM3D_BLOCK} px (its block), "
                f"with both sides at least {BM3D_BLOCK}; got {width}×{height}"
            )
        return np.asarray(bm3d.bm3d(img, sigma_psd=s), dtype=np.float32).reshape(img.shape)

    return denoise


def load_network(spec: str) -> nn.Module:
    """Loads a network from ``"n3net"``/``"dncnn"``/``"n3net-blind"`` (shipped), a
    ``.safetensors`` weights file, or ``"official:PATH"`` (the N3Net authors' checkpoint)."""
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"model must be a name or a path (str), got {type(spec).__name__}")
    spec = str(spec)
    if spec in SHIPPED:
        return load_model(shipped_weights(spec))
    if spec.startswith("official:"):
        return N3Net.from_official_checkpoint(spec.split(":", 1)[1])
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"model {spec!r} is neither a shipped model ({', '.join(SHIPPED)}), nor a "
            f"classical method ({', '.join(CLASSICAL)}), nor 'official:PATH', nor an existing "
            ".safetensors file"
        )
    return load_model(path)


def model_sigma(spec: str) -> float | None:
    """Training σ recorded in a weights file (``None`` when unknown or a range)."""
    try:
        path = shipped_weights(spec) if spec in SHIPPED else Path(spec)
        _, info = read_weights(path)
        low, high = parse_sigma(str(info["extra"].get("sigma", "")))
    except (ValueError, FileNotFoundError, OSError):
        return None
    return low if low == high else None


def get_denoiser(
    spec: str,
    sigma: float,
    tile: int = 512,
    overlap: int = 48,
    device: str | torch.device = "cpu",
    precision: str = "auto",
    progress: bool = False,
    warn_sigma: bool = True,
) -> Denoiser:
    """A function ``(H, W) noisy → (H, W) denoised`` (clipped to ``[0, 1]``, float32).

    Args:
        spec: ``"nlmeans"``, ``"bm3d"``, or a network spec for :func:`load_network`.
        sigma: noise level (0–255 scale); used by the classical methods, and compared with
            the σ a network was trained at (a warning on stderr when they differ by > 1).
        tile: tile size for networks.
        overlap: tile overlap for networks.
        device: torch device for networks.
        precision: arithmetic of the networks' convolutions: ``"auto"`` (bfloat16 autocast
            where ``device`` supports it natively, float32 otherwise), ``"float32"`` or
            ``"bfloat16"``; ignored by the classical methods.
        progress: a per-tile progress bar on stderr for images larger than a tile.
        warn_sigma: print the warning about a σ the network was not trained at.

    Raises:
        ValueError: bad ``tile``/``overlap``/``sigma``/``precision``, an unknown or
            unavailable ``device``.
        FileNotFoundError: ``spec`` is not a known model nor an existing file (or names the
            blind N3Net, which is not shipped yet).
    """
    check_tiling(tile, overlap)
    device = resolve_device(device)
    autocast_dtype(precision, device)
    low, high = parse_sigma(sigma)
    if low != high:
        raise ValueError(f"sigma must be one noise level, got the range {sigma!r}")
    sigma = low
    if spec == "nlmeans":
        base = nlmeans_denoiser(sigma)
    elif spec == "bm3d":
        base = bm3d_denoiser(sigma)
    else:
        model = load_network(spec)
        trained = model_sigma(spec) if not spec.startswith("official:") else None
        if warn_sigma and trained is not None and abs(trained - sigma) > 1:
            print(
                f"warning: model {spec} was trained at sigma={trained:g}, input sigma={sigma:g}",
                file=sys.stderr,
            )

        def base(img: np.ndarray) -> np.ndarray:
            return denoise_tensor(model, img, tile=tile, overlap=overlap, device=device,
                                  progress=progress, precision=precision)

    return lambda img: np.clip(base(img), 0.0, 1.0)


def denoise_array(denoiser: Denoiser, image: np.ndarray) -> np.ndarray:
    """Applies a grayscale denoiser to ``(H, W)`` or, channel by channel, ``(H, W, C)``.

    Raises:
        TypeError: ``denoiser`` is not callable or ``image`` not a real-valued array.
        ValueError: ``image`` is empty or has NaN/inf (naming the first pixel).
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable (image -> image), got "
                        f"{type(denoiser).__name__}")
    check_image_values(image)
    if image.ndim == 2:
        return denoiser(image)
    if image.ndim == 3:
        if all(np.array_equal(image[..., 0], image[..., c]) for c in range(1, image.shape[2])):
            # Grayscale stored as RGB: denoise once and replicate.
            return np.repeat(denoiser(image[..., 0])[..., None], image.shape[2], axis=-1)
        return np.stack([denoiser(image[..., c]) for c in range(image.shape[2])], axis=-1)
    raise ValueError(f"image must have shape (H, W) or (H, W, C), got {image.shape}")


@dataclass(frozen=True)
class DenoiseResult:
    """What :func:`denoise_file_report` did.

    Attributes:
        denoised: the denoised image (without the alpha channel), in ``[0, 1]``.
        sigma: the noise level used (0–255 scale): the one given, or the estimate.
        sigma_estimated: ``sigma`` was estimated from the image
            (:func:`~n3seq_image.noise_level.estimate_sigma`).
        model: the denoiser spec that ran (``"n3net-blind"`` when ``"n3net"`` was asked
            for without a σ and the blind weights are shipped).
        noisy: the noisy image the denoiser saw when noise was added (else ``None``).
        psnr_noisy: PSNR (dB) of ``noisy`` (unclipped) against the clean input, when noise
            was added.
        psnr_denoised: PSNR (dB) of ``denoised`` against the clean input, when noise was added.
        outputs: the files written (the output, then the noisy image if asked for).
    """

    denoised: np.ndarray
    sigma: float
    sigma_estimated: bool
    model: str
    noisy: np.ndarray | None = None
    psnr_noisy: float | None = None
    psnr_denoised: float | None = None
    outputs: tuple[str, ...] = ()


def _check_seed(add_noise_seed: int | None) -> None:
    if add_noise_seed is not None and (
        isinstance(add_noise_seed, bool) or not isinstance(add_noise_seed, (int, np.integer))
        or add_noise_seed < 0
    ):
        raise ValueError(f"add_noise_seed must be an int >= 0, got {add_noise_seed!r}")


def _estimate(image: np.ndarray) -> float:
    try:
        return estimate_sigma(image)
    except ValueError as exc:
        raise ValueError(f"{exc}; give the noise level (--sigma)") from None


def denoise_file_report(
    src: str | Path,
    dst: str | Path,
    sigma: float | None = None,
    model: str = "n3net",
    add_noise_seed: int | None = None,
    tile: int = 512,
    overlap: int = 48,
    device: str = "cpu",
    precision: str = "auto",
    progress: bool = False,
    save_noisy: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> DenoiseResult:
    """:func:`denoise_file`, returning what it did (σ used, model, PSNRs, files written).

    Args:
        src: input image.
        dst: output path; written only if denoising succeeds, never the input itself.
        sigma: noise level of the input (0–255 scale). ``None``: estimated from the image
            with :func:`~n3seq_image.noise_level.estimate_sigma` and used as the classical
            methods' σ; ``"n3net"`` then runs the blind N3Net where it is shipped, else the
            σ = 25 model with a one-line warning on stderr.
        model: denoiser spec (see :func:`get_denoiser`). ``"n3net"`` is the best shipped
            N3Net for the σ: the σ = 25 network for a given σ within
            :data:`SIGMA25_BAND` of 25, the blind N3Net otherwise (where shipped; ``log``
            says so). ``"n3net-sigma25"`` always runs the σ = 25 network.
        add_noise_seed: if given, first add Gaussian noise of ``sigma`` (required then) with
            this seed, to try the denoiser on a clean image; the PSNRs against that clean
            image are then in the result.
        tile: tile size for networks.
        overlap: tile overlap for networks.
        device: torch device.
        precision: ``"auto"``, ``"float32"`` or ``"bfloat16"`` (see :func:`get_denoiser`).
        progress: a per-tile progress bar on stderr for images larger than ``tile``.
        save_noisy: also write the noisy input here (needs ``add_noise_seed``): clipped to
            ``[0, 1]`` and 8-bit (what a noisy PNG holds), atomically, with the alpha channel.
        log: called with a line of information (the estimated σ); warnings always go to
            stderr.

    Raises:
        ValueError: ``dst`` or ``save_noisy`` is ``src`` (by any path) or each other, an
            unsupported output format, an alpha channel for a JPEG/BMP output, bad options,
            ``add_noise_seed`` without ``sigma``, an image too small to estimate σ.
        IsADirectoryError: an output is a folder.
        NotADirectoryError: a parent of an output is a file.
    """
    dst = check_output_path(dst, inputs=(src,))
    check_image_output(dst)
    if save_noisy is not None:
        save_noisy = check_output_path(save_noisy, inputs=(src, dst))
        if save_noisy.resolve() == dst.resolve():
            raise ValueError(f"save_noisy and the output name the same file {str(dst)!r}")
        check_image_output(save_noisy)
    if sigma is not None:
        low, high = parse_sigma(sigma)
        if low != high:
            raise ValueError(f"sigma must be one noise level, got the range {sigma!r}")
    _check_seed(add_noise_seed)
    if add_noise_seed is not None and sigma is None:
        raise ValueError("add_noise_seed needs sigma: the noise level to add")
    if save_noisy is not None and add_noise_seed is None:
        raise ValueError("save_noisy writes the noise add_noise_seed adds: give add_noise_seed")
    autocast_dtype(precision, "cpu")
    image, alpha, depth = read_image(src)
    check_image_output(dst, alpha=alpha is not None)
    if save_noisy is not None:
        check_image_output(save_noisy, alpha=alpha is not None)
    clean, noisy = None, None
    if add_noise_seed is not None:
        clean, image = image, add_noise(image, sigma, add_noise_seed)
        noisy = image
    estimated = sigma is None
    warn_sigma = True
    if sigma is None:
        sigma = _estimate(image)
        if log is not None:
            log(f"estimated noise level: sigma = {sigma:.2f} (0-255 scale; give --sigma to "
                "override)")
        if model == "n3net":
            if blind_available():
                model = BLIND
            else:
                warn_sigma = False
                print(f"warning: the blind N3Net weights are not shipped yet; using the "
                      f"sigma = 25 model for the estimated sigma = {sigma:.2f}",
                      file=sys.stderr)
    elif model == "n3net" and blind_available():
        # the σ the σ-specific network was trained at, as recorded in its weights file
        trained = model_sigma(SIGMA25) or 25.0
        if abs(sigma - trained) > SIGMA25_BAND:
            model = BLIND
            if log is not None:
                log(f"using the blind N3Net for sigma = {sigma:g} (the sigma = {trained:g} "
                    f"N3Net runs for sigma {trained - SIGMA25_BAND:g}-"
                    f"{trained + SIGMA25_BAND:g}; --model {SIGMA25} forces it)")
    denoiser = get_denoiser(model, sigma, tile=tile, overlap=overlap, device=device,
                            precision=precision, progress=progress, warn_sigma=warn_sigma)
    out = denoise_array(denoiser, image)
    written = [str(dst)]
    if save_noisy is not None:
        existed = save_noisy.exists()
        save_image(save_noisy, noisy, alpha=alpha, depth=8)
        try:
            save_image(dst, out, alpha=alpha, depth=depth)
        except BaseException:
            if not existed:  # a failed run leaves no file
                save_noisy.unlink(missing_ok=True)
            raise
        written.append(str(save_noisy))
    else:
        save_image(dst, out, alpha=alpha, depth=depth)
    psnrs: dict[str, float] = {}
    if clean is not None:
        psnrs = {"psnr_noisy": psnr(noisy, clean), "psnr_denoised": psnr(out, clean)}
    return DenoiseResult(denoised=out, sigma=float(sigma), sigma_estimated=estimated,
                         model=model, noisy=noisy, outputs=tuple(written), **psnrs)


def denoise_file(
    src: str | Path,
    dst: str | Path,
    sigma: float | None = None,
    model: str = "n3net",
    add_noise_seed: int | None = None,
    tile: int = 512,
    overlap: int = 48,
    device: str = "cpu",
    precision: str = "auto",
    progress: bool = False,
    save_noisy: str | Path | None = None,
) -> np.ndarray:
    """Denoises an image file and writes the result atomically.

    Any PIL mode is read (see :func:`~n3seq_image.data.read_image`): grey files are written
    as grey, an alpha channel is copied through unchanged (only the colour is denoised; PNG and
    TIFF outputs), and 16-bit or floating-point grey inputs give 16-bit PNG / 16-bit or float
    TIFF outputs (8 bits where the output format allows no more).

    Args:
        src: input image.
        dst: output path; written only if denoising succeeds, never the input itself.
        sigma: noise level of the input (0–255 scale); ``None`` estimates it (see
            :func:`denoise_file_report`).
        model: denoiser spec (see :func:`get_denoiser`).
        add_noise_seed: if given, first add Gaussian noise of ``sigma`` with this seed
            (to try the denoiser on a clean image).
        tile: tile size for networks.
        overlap: tile overlap for networks.
        device: torch device.
        precision: ``"auto"`` (bfloat16 convolutions where native), ``"float32"`` or
            ``"bfloat16"``; the output is float32 either way.
        progress: a per-tile progress bar on stderr for images larger than ``tile``.
        save_noisy: also write the noisy input here (8-bit, clipped; needs
            ``add_noise_seed``).

    Returns:
        The denoised image (without the alpha channel).

    Raises:
        ValueError: ``dst`` is ``src`` (by any path), an unsupported output format, an alpha
            channel for a JPEG/BMP output, bad options.
        IsADirectoryError: ``dst`` is a folder.
        NotADirectoryError: a parent of ``dst`` is a file.
    """
    return denoise_file_report(
        src, dst, sigma, model=model, add_noise_seed=add_noise_seed, tile=tile,
        overlap=overlap, device=device, precision=precision, progress=progress,
        save_noisy=save_noisy,
    ).denoised
