"""Benchmark cases: each ``CASES[name](**params)`` builds its inputs and returns the call to time.

The same builders serve the in-process timing and the fresh-process memory measurement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import n3seq
from n3seq.aggregate import CHUNK_ELEMENTS, global_scores
from n3seq.approximate import approx_knn_aggregate
from n3seq.reference import continuous_knn_reference

Call = Callable[[], Any]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _sets(n: int, e: int, f: int, device: str, grad: bool) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, n, e, generator=g).to(device)
    v = torch.randn(1, n, f, generator=g).to(device)
    return x.requires_grad_(grad), v.requires_grad_(grad)


def hard_knn_global(query: Tensor, keys: Tensor, values: Tensor, k: int,
                    chunk: int = 1 << 22) -> Tensor:
    """Hard kNN baseline: matmul distances + top-k + gather, chunked over queries."""
    norms = keys.square().sum(-1)
    step = max(1, chunk // keys.shape[1])
    out = []
    for s in range(0, query.shape[1], step):
        scores = global_scores(query[:, s:s + step], keys, norms)
        idx = scores.topk(k, dim=-1).indices  # (1, n, k)
        out.append(values[0][idx[0]][None])
    return torch.cat(out, dim=1)


def naive_relaxation(query: Tensor, keys: Tensor, values: Tensor, k: int,
                     temperature: float) -> Tensor:
    """Naive baseline: the full N × M score matrix and k full weight matrices at once."""
    scores = global_scores(query, keys)
    w = continuous_knn_reference(scores, k, temperature)  # (1, N, k, M)
    return torch.matmul(w.flatten(1, 2), values).unflatten(1, (query.shape[1], k))


def matmul_floor(query: Tensor, keys: Tensor, values: Tensor, weights: Tensor,
                 logits: Tensor | None = None) -> Tensor:
    """The matrix products any exact dense relaxation must do, and nothing else.

    Per chunk of queries (the chunking of ``knn_aggregate``): the distance product and the k
    weighted sums as one ``(k·n × M) @ (M × F)`` product, with fixed stand-in ``weights``
    ``(1, step·k, M)`` instead of k softmax rounds. Its time over hard kNN's is a lower bound
    of the ratio any exact dense implementation can reach on the machine. With ``logits``
    (``(1, step, M)``, in the normal range of ``exp``) it also evaluates one ``exp`` per
    (query, candidate) and round — the softmax numerators, the least transcendental work of
    a log-space relaxation at a general temperature.
    """
    norms = keys.square().sum(-1)
    step = min(query.shape[1], max(1, CHUNK_ELEMENTS // keys.shape[1]))
    k = weights.shape[1] // step
    out = []
    for s in range(0, query.shape[1], step):
        q = query[:, s:s + step]
        global_scores(q, keys, norms)
        if logits is not None:
            w = weights[:, : q.shape[1] * k].view(1, q.shape[1], k, -1)
            for j in range(k):
                torch.exp(logits[:, : q.shape[1]], out=w[:, :, j])
        out.append(torch.matmul(weights[:, : q.shape[1] * k], values))
    return torch.cat(out, dim=1)


def _run(fn: Callable[[], Tensor], grad: bool, device: str) -> Call:
    def call() -> None:
        out = fn()
        if grad:
            out.square().sum().backward()
        _sync(device)

    return call


def sets_hard(n: int, e: int = 64, f: int = 64, k: int = 7, device: str = "cpu",
              autocast: str | None = None) -> Call:
    x, v = _sets(n, e, f, device, False)
    return _run(lambda: _autocast(device, autocast, lambda: hard_knn_global(x, x, v, k)),
                False, device)


def sets_n3(n: int, e: int = 64, f: int = 64, k: int = 7, grad: bool = False,
            temperature: float = 1.0, device: str = "cpu", autocast: str | None = None) -> Call:
    x, v = _sets(n, e, f, device, grad)

    def fn() -> Tensor:
        with torch.set_grad_enabled(grad):
            return _autocast(device, autocast,
                             lambda: n3seq.knn_aggregate(x, x, v, k, temperature))

    return _run(fn, grad, device)


def sets_floor(n: int, e: int = 64, f: int = 64, k: int = 7, device: str = "cpu",
               exps: bool = False) -> Call:
    x, v = _sets(n, e, f, device, False)
    step = min(n, max(1, CHUNK_ELEMENTS // n))
    g = torch.Generator().manual_seed(1)
    w = torch.rand(1, step * k, n, generator=g).to(device)
    logits = (-20.0 * torch.rand(1, step, n, generator=g)).to(device) if exps else None
    return _run(lambda: matmul_floor(x, x, v, w, logits), False, device)


def sets_naive(n: int, e: int = 64, f: int = 64, k: int = 7, grad: bool = False,
               temperature: float = 1.0, device: str = "cpu") -> Call:
    x, v = _sets(n, e, f, device, grad)

    def fn() -> Tensor:
        with torch.set_grad_enabled(grad):
            return naive_relaxation(x, x, v, k, temperature)

    return _run(fn, grad, device)


def sets_approx(n: int, e: int = 64, f: int = 64, k: int = 7, grad: bool = False,
                num_candidates: int = 32, temperature: float = 1.0,
                device: str = "cpu", backend: str = "torch") -> Call:
    x, v = _sets(n, e, f, device, grad)

    def fn() -> Tensor:
        with torch.set_grad_enabled(grad):
            return approx_knn_aggregate(x, x, v, k, temperature,
                                        num_candidates=num_candidates, search=backend)

    return _run(fn, grad, device)


def windows_hard(n: int, radius: int = 16, e: int = 64, f: int = 64, k: int = 7,
                 device: str = "cpu") -> Call:
    x, v = _sets(n, e, f, device, False)
    cand = n3seq.window_candidates(n, radius, device=device)[0]

    def fn() -> Tensor:
        out = []
        for s in range(0, n, 8192):
            idx = cand[s:s + 8192]
            d = (x[0, s:s + 8192, None, :] - x[0][idx]).square().sum(-1)
            out.append(v[0][idx.gather(1, d.topk(k, largest=False).indices)])
        return torch.cat(out)

    return _run(fn, False, device)


def windows_n3(n: int, radius: int = 16, e: int = 64, f: int = 64, k: int = 7,
               grad: bool = False, temperature: float = 1.0, device: str = "cpu") -> Call:
    x, v = _sets(n, e, f, device, grad)
    cand = n3seq.window_candidates(n, radius, device=device)

    def fn() -> Tensor:
        with torch.set_grad_enabled(grad):
            return n3seq.knn_aggregate(x, x, v, k, temperature, candidates=cand)

    return _run(fn, grad, device)


def _autocast(device: str, dtype: str | None, fn: Callable[[], Tensor]) -> Tensor:
    if dtype is None:
        return fn()
    with torch.autocast(device.split(":")[0], dtype=getattr(torch, dtype)):
        return fn()


class WithoutN3(nn.Module):
    """An N3Net's stages with each N³ block replaced by a free tensor of the same shape.

    The convolutions are exactly those of the N3Net (same weights, same channel counts); the
    ``(k + 1)·C`` channel input of later stages is the stage output repeated, which costs a
    copy and nothing else. With ``block_cnns`` the N³ blocks' embedding and temperature CNNs
    also run (outputs unused): every convolution of the N3Net, only the matching and
    aggregation left out — the floor of the N3Net / convolutions ratio.
    """

    def __init__(self, net: nn.Module, block_cnns: bool = False) -> None:
        super().__init__()
        self.net = net
        self.block_cnns = block_cnns

    def forward(self, x: Tensor) -> Tensor:
        from n3seq_image.memory_format import is_channels_last

        net = self.net
        side = x.new_zeros(())
        for i, stage in enumerate(net.stages):
            x = stage(x)
            if i < len(net.n3blocks):
                if self.block_cnns:
                    block = net.n3blocks[i]
                    # Summed into the output with weight 0, so training runs their backward.
                    side = side + block.embedding(x).mean() + block.temperature_net(x).mean()
                cl = is_channels_last(x)
                x = x.repeat(1, net.k + 1, 1, 1)
                if cl:  # as N3Block2d does: the next stage gets the format it ran in
                    x = x.contiguous(memory_format=torch.channels_last)
        return x + 0.0 * side if self.block_cnns else x


def _n3net(**kwargs: Any) -> nn.Module:
    from n3seq_image import N3Net

    torch.manual_seed(0)
    return N3Net(**kwargs)


def _memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def image_n3net(height: int, width: int, backend: str = "fast", without_n3: bool = False,
                device: str = "cpu", channels_last: bool = False,
                block_cnns: bool = False) -> Call:
    fmt = _memory_format(channels_last)
    net = _n3net(backend=backend).eval().to(device, memory_format=fmt)
    model = WithoutN3(net, block_cnns) if without_n3 else net
    x = torch.rand(1, 1, height, width, device=device).contiguous(memory_format=fmt)

    def call() -> None:
        with torch.inference_mode():
            model(x)
        _sync(device)

    return call


def train_step(model: str, batch: int = 32, size: int = 80, device: str = "cpu",
               channels_last: bool = False) -> Call:
    """One Adam step of ``model``: ``"n3net"``, ``"dncnn"`` (DnCNN-17) or ``"n3net-cnns"``
    (every N3Net convolution incl. the N³ blocks' CNNs, no matching: the floor)."""
    if model == "n3net":
        net = _n3net()
    elif model == "n3net-cnns":
        net = WithoutN3(_n3net(), block_cnns=True)
    else:
        from n3seq_image import DnCNN

        torch.manual_seed(0)
        net = DnCNN(1, 1, depth=17, features=64)
    fmt = _memory_format(channels_last)
    net = net.train().to(device, memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    clean = torch.rand(batch, 1, size, size, device=device)
    noisy = (clean + 0.1 * torch.randn_like(clean)).contiguous(memory_format=fmt)

    def call() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(net(noisy), clean).backward()
        opt.step()
        _sync(device)

    return call


#: ``skimage.data`` photos of the denoising mosaic (bundled with scikit-image, not in ../shared).
MOSAIC_PHOTOS = ("camera", "astronaut", "coffee", "chelsea")


def photo_mosaic(height: int, width: int, cell: int = 256, seed: int = 0) -> np.ndarray:
    """A deterministic natural-image test picture: a mosaic of grey ``skimage.data`` photos.

    The canvas is cut into ``cell × cell`` squares, filled row by row with crops of
    :data:`MOSAIC_PHOTOS` in turn (grey as PIL's ``L``, how the CLI reads a colour file as
    grey), each at an offset and in one of the 8 flips/rotations drawn from a generator seeded
    with ``seed``; the last row and column are cropped to the canvas.

    Args:
        height: image height in pixels (>= 1).
        width: image width in pixels (>= 1).
        cell: side of the squares (>= 1, at most the smallest photo side, 300).
        seed: seed of the offsets and orientations.

    Returns:
        ``(height, width)`` float32 image with values ``k / 255`` in ``[0, 1]``.

    Raises:
        ValueError: a size or ``cell`` below 1, or a ``cell`` larger than a photo.
    """
    import skimage.data
    from PIL import Image

    for name, value in (("height", height), ("width", width), ("cell", cell)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    photos = [np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("L"))
              for name in MOSAIC_PHOTOS]
    smallest = min(min(p.shape) for p in photos)
    if cell > smallest:
        raise ValueError(f"cell must be <= {smallest} (the smallest photo side), got {cell}")
    rng = np.random.default_rng(seed)
    out = np.empty((height, width), dtype=np.uint8)
    index = 0
    for top in range(0, height, cell):
        for left in range(0, width, cell):
            photo = photos[index % len(photos)]
            index += 1
            y = int(rng.integers(0, photo.shape[0] - cell + 1))
            x = int(rng.integers(0, photo.shape[1] - cell + 1))
            orientation = int(rng.integers(0, 8))
            crop = np.rot90(photo[y : y + cell, x : x + cell], orientation % 4)
            if orientation >= 4:
                crop = crop[:, ::-1]
            h, w = min(cell, height - top), min(cell, width - left)
            out[top : top + h, left : left + w] = crop[:h, :w]
    return out.astype(np.float32) / np.float32(255.0)


class ScoredCall:
    """A call to time that keeps its last result, and metrics of it for the benchmark row.

    The timed calls only run ``fn``; :meth:`metrics` (``score`` of the last result) is taken
    once the timing is done, so scoring costs no measured time.
    """

    def __init__(self, fn: Callable[[], Any], score: Callable[[Any], dict[str, Any]]) -> None:
        self.fn = fn
        self.score = score
        self.last: Any = None

    def __call__(self) -> None:
        self.last = self.fn()

    def metrics(self) -> dict[str, Any]:
        """``score`` of the last call's result (runs ``fn`` once if it never ran)."""
        if self.last is None:
            self()
        return self.score(self.last)


def denoise_image(height: int, width: int, precision: str = "auto", model: str = "n3net",
                  sigma: float = 25.0, seed: int = 0, tile: int = 512, overlap: int = 48,
                  device: str = "cpu") -> ScoredCall:
    """``n3seq-image denoise``'s path on a noisy :func:`photo_mosaic`; scored by PSNR.

    The denoiser is :func:`n3seq_image.denoise.get_denoiser` with the CLI's defaults (tiles
    of 512 px overlapping by 48, channels-last on CPU) at ``precision``, applied with
    :func:`~n3seq_image.denoise.denoise_array`; the input is the mosaic plus Gaussian noise of
    ``sigma`` (:func:`~n3seq_image.data.add_noise`, seed ``seed``, not clipped, as
    ``--add-noise`` does). The metrics are the output's ``psnr_db`` against the clean mosaic,
    the noisy input's ``psnr_noisy_db``, the autocast ``dtype`` that ``precision`` meant on
    ``device`` (``auto`` is float32 where bfloat16 is not native), ``bf16_native``, the
    image's ``megapixels``, the number of ``tiles`` and the ``processed_megapixels`` of all
    tiles together.
    """
    from n3seq_image.data import add_noise
    from n3seq_image.denoise import MIN_SIZE, denoise_array, get_denoiser, tile_spans
    from n3seq_image.metrics import psnr
    from n3seq_image.precision import autocast_dtype, bf16_supported

    clean = photo_mosaic(height, width)
    noisy = add_noise(clean, sigma, seed)
    denoiser = get_denoiser(model, sigma, tile=tile, overlap=overlap, device=device,
                            precision=precision)
    dtype = autocast_dtype(precision, device)
    padded = [max(n, MIN_SIZE) for n in (height, width)]  # small images are padded to 80
    spans = [tile_spans(n, tile, overlap) for n in padded]
    info = {
        "dtype": "float32" if dtype is None else str(dtype).split(".")[-1],
        "bf16_native": bf16_supported(device), "megapixels": height * width / 1e6,
        "tiles": len(spans[0][1]) * len(spans[1][1]),
        "processed_megapixels": float(np.prod([len(starts) * size
                                               for size, starts in spans])) / 1e6,
        "psnr_noisy_db": psnr(noisy, clean),
    }
    return ScoredCall(lambda: denoise_array(denoiser, noisy),
                      lambda out: {**info, "psnr_db": psnr(out, clean)})


CASES: dict[str, Callable[..., Call]] = {
    "sets_hard": sets_hard,
    "sets_n3": sets_n3,
    "sets_naive": sets_naive,
    "sets_floor": sets_floor,
    "sets_approx": sets_approx,
    "windows_hard": windows_hard,
    "windows_n3": windows_n3,
    "image_n3net": image_n3net,
    "train_step": train_step,
    "denoise_image": denoise_image,
}
