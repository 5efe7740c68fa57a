"""The N³ block for images: soft k-nearest-neighbour patches inside 2-D search windows.

For a feature map ``y`` (B, C, H, W) the block

1. embeds ``y`` with a small CNN and extracts ``p × p`` patches at stride ``s`` from the
   embedding and from ``y`` (zero padding as in :mod:`n3seq_image.patches`);
2. scores every query patch against the ``window² − 1`` other patches of its search window
   (:func:`~n3seq_image.windows.window_candidates_2d`) by the negative squared Euclidean
   distance of the embeddings, optionally batch-normalised (``BatchNorm1d(1)`` over all
   scores of the batch, as in the authors' code);
3. turns the scores into k soft neighbour weights with :func:`n3seq.continuous_knn` at the
   patch's temperature ``t = bias · exp(mean of the temperature map over the patch)``;
4. averages ``y``'s candidate patches with each weight vector and folds the k neighbour
   volumes back into images ``z₁ … zₖ``; the output is ``[y, z₁ − y, …, zₖ − y]``.

Two backends give the same result: ``"reference"`` gathers the candidate patches of every
query (simple, memory-hungry); ``"fast"`` (default) works on tiles of queries with matrix
products over the tile's shared candidates, and never materialises per-query candidate
patches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from n3seq import continuous_knn
from n3seq_image.fast2d import aggregate_tiled, supports_fast
from n3seq_image.memory_format import is_channels_last
from n3seq_image.patches import extract_patches, fold_patches, patch_grid
from n3seq_image.windows import window_candidates_2d

Placement = Literal["official", "paper"]
Backend = Literal["fast", "reference"]

#: Elements of one chunk's gathered candidates in the reference backend (~64 MiB float32).
REFERENCE_CHUNK_ELEMENTS = 1 << 24


def min_image_size(patch_size: int = 10, stride: int = 5, window: int = 15) -> int:
    """Smallest image side that holds a full search window: ``p + s·(window − 1)`` (80 px)."""
    return patch_size + stride * (window - 1)


def check_image_batch(x: Tensor, channels: int, min_size: int, who: str) -> None:
    """Raises unless ``x`` is a ``(B, channels, H, W)`` tensor with ``H, W >= min_size``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"x must have shape (B, {channels}, H, W), got {tuple(x.shape)}")
    if min(x.shape[-2:]) < min_size:
        raise ValueError(
            f"{who} needs images of at least {min_size}×{min_size} px (one full N³ search "
            f"window), got x of shape {tuple(x.shape)}"
        )


def _check_inputs(
    y: Tensor, embedding: Tensor, log_temperature: Tensor | None, k: int, patch_size: int,
    stride: int, window: int, placement: str, backend: str,
) -> None:
    for name, x in (("y", y), ("embedding", embedding), ("log_temperature", log_temperature)):
        if x is None:
            continue
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor")
        if x.dim() != 4:
            raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}")
    b, _, h, w = y.shape
    if embedding.shape[0] != b or embedding.shape[2:] != y.shape[2:]:
        raise ValueError(
            f"embedding must have shape (B, E, H, W) = ({b}, E, {h}, {w}), "
            f"got {tuple(embedding.shape)}"
        )
    if log_temperature is not None and (
        log_temperature.shape[1] != 1 or log_temperature.shape[0] != b
        or log_temperature.shape[2:] != y.shape[2:]
    ):
        raise ValueError(
            f"log_temperature must have shape (B, 1, H, W) = ({b}, 1, {h}, {w}), "
            f"got {tuple(log_temperature.shape)}"
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if k > window * window - 1:
        raise ValueError(f"k={k} exceeds the {window * window - 1} candidates of a window")
    size = min_image_size(patch_size, stride, window)
    if h < size or w < size:
        raise ValueError(
            f"images must be at least {size}×{size} px (patch_size={patch_size}, "
            f"stride={stride}, window={window}), got y of shape {tuple(y.shape)}"
        )
    if placement not in ("official", "paper"):
        raise ValueError(f"placement must be 'official' or 'paper', got {placement!r}")
    if backend not in ("fast", "reference"):
        raise ValueError(f"backend must be 'fast' or 'reference', got {backend!r}")


def _patch_temperature(
    log_temperature: Tensor | None, batch: int, num: int, patch_size: int, stride: int,
    bias: float, like: Tensor,
) -> Tensor:
    """Per-patch temperature ``(B, N)``: bias · exp(mean of the map over the padded patch)."""
    if log_temperature is None:
        return like.new_full((batch, num), bias)
    mean = extract_patches(log_temperature, patch_size, stride).mean(-1)
    return bias * mean.exp()


def _weights(
    dist: Tensor, temperature: Tensor, k: int, score_norm: Callable[[Tensor], Tensor] | None,
    placement: str,
) -> Tensor:
    """Soft kNN weights ``(B, N, k, O)`` from squared distances ``(B, N, O)``."""
    scores = -dist
    if score_norm is not None:
        # As in the authors' code: the batch-norm sees the scores (negative distances).
        scores = score_norm(scores.reshape(scores.shape[0], 1, -1)).reshape(scores.shape)
    t = temperature[..., None]
    if placement == "official":
        return continuous_knn(scores / t, k)
    return continuous_knn(scores, k, temperature=t)


def _reference(
    y: Tensor, embedding: Tensor, temperature: Tensor, k: int, patch_size: int, stride: int,
    window: int, score_norm: Callable[[Tensor], Tensor] | None, placement: str,
) -> Tensor:
    b, _, h, w = y.shape
    grid = patch_grid((h, w), patch_size, stride)
    yp = extract_patches(y, patch_size, stride)
    ep = extract_patches(embedding, patch_size, stride)
    cand = window_candidates_2d(grid, window, exclude_self=True, device=y.device)[0]
    n, o = cand.shape
    step = max(1, REFERENCE_CHUNK_ELEMENTS // (b * o * max(ep.shape[-1], yp.shape[-1])))
    chunks = [(q, min(q + step, n)) for q in range(0, n, step)]
    dist = torch.cat(
        [((ep[:, q0:q1, None, :] - ep[:, cand[q0:q1]]) ** 2).sum(-1) for q0, q1 in chunks], 1
    )
    weights = _weights(dist, temperature, k, score_norm, placement)
    z = torch.cat(
        [torch.einsum("bnko,bnod->bnkd", weights[:, q0:q1], yp[:, cand[q0:q1]])
         for q0, q1 in chunks], 1
    )
    images = fold_patches(rearrange(z, "b n k d -> (b k) n d"), (h, w), patch_size, stride)
    return rearrange(images, "(b k) c h w -> b k c h w", b=b)


def n3_aggregate_2d(
    y: Tensor,
    embedding: Tensor,
    log_temperature: Tensor | None,
    k: int,
    *,
    patch_size: int = 10,
    stride: int = 5,
    window: int = 15,
    temperature_bias: float = 0.1,
    score_norm: Callable[[Tensor], Tensor] | None = None,
    placement: Placement = "official",
    backend: Backend = "fast",
) -> Tensor:
    r"""k soft nearest-neighbour images of ``y``, matched on patches of ``embedding``.

    Args:
        y: the feature map whose patches are aggregated.
        embedding: the map whose patches are compared (same H, W as ``y``).
        log_temperature: map whose per-patch mean ``m`` gives the temperature
            ``t = temperature_bias · exp(m)`` (mean over all ``p²`` pixels of the padded
            patch, padding zeros included); ``None`` for ``t = temperature_bias``.
        k: number of neighbours.
        patch_size: patch side p (10 in N3Net).
        stride: patch grid step s (5).
        window: side of the square search window in patch positions (15 → 224 candidates).
        temperature_bias: the scale of the temperature (0.1).
        score_norm: optional callable applied to the scores (negative squared distances)
            reshaped to ``(B, 1, N·O)``, e.g. ``nn.BatchNorm1d(1)`` as in N3Net.
        placement: ``"paper"``: ``continuous_knn(scores, k, temperature=t)`` (t inside every
            round); ``"official"``: ``continuous_knn(scores / t, k)`` (the authors' released
            code, which their weights need).
        backend: ``"fast"`` (tiled block matrix products; needs ``stride`` to divide
            ``patch_size``, other geometries fall back to the reference) or ``"reference"``
            (per-query gather); both compute the same function.

    Returns:
        The neighbour images ``z₁ … zₖ`` stacked on dim 1.

    Shape:
        - y: :math:`(B, C, H, W)` with ``H, W >= p + s·(window − 1)`` (80 px)
        - embedding: :math:`(B, E, H, W)`
        - log_temperature: :math:`(B, 1, H, W)`
        - output: :math:`(B, k, C, H, W)`

    Example:
        >>> y = torch.rand(1, 2, 80, 90)
        >>> n3_aggregate_2d(y, y, None, k=3).shape
        torch.Size([1, 3, 2, 80, 90])
    """
    _check_inputs(y, embedding, log_temperature, k, patch_size, stride, window, placement,
                  backend)
    if not temperature_bias > 0:
        raise ValueError(f"temperature_bias must be positive, got {temperature_bias}")
    b, _, h, w = y.shape
    n1, n2 = patch_grid((h, w), patch_size, stride)
    temperature = _patch_temperature(log_temperature, b, n1 * n2, patch_size, stride,
                                     temperature_bias, y)
    if backend == "reference" or not supports_fast(patch_size, stride):
        return _reference(y, embedding, temperature, k, patch_size, stride, window, score_norm,
                          placement)
    return aggregate_tiled(y, embedding, temperature, k, patch_size, stride, window,
                           lambda d, t: _weights(d, t, k, score_norm, placement))


def n3_output_2d(y: Tensor, neighbours: Tensor, differences: bool = True) -> Tensor:
    """Concatenates ``y`` with its neighbour images: ``[y, z₁ − y, …, zₖ − y]`` on channels.

    Shape:
        - y: :math:`(B, C, H, W)`
        - neighbours: :math:`(B, k, C, H, W)`
        - output: :math:`(B, (k + 1) C, H, W)`
    """
    if differences:
        neighbours = neighbours - y[:, None]
    return torch.cat([y, rearrange(neighbours, "b k c h w -> b (k c) h w")], dim=1)


def conv_net(in_channels: int, features: int, out_channels: int, depth: int) -> nn.Sequential:
    """``depth − 1`` × [conv3×3 (no bias) + BatchNorm + ReLU], then conv3×3 (with bias).

    With ``depth = 3`` this is the N3Net authors' embedding / temperature CNN; the layer
    indices (0, 1, 3, 4, 6) match their checkpoints.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for _ in range(depth - 1):
        layers += [nn.Conv2d(channels, features, 3, padding=1, bias=False),
                   nn.BatchNorm2d(features), nn.ReLU(inplace=True)]
        channels = features
    layers.append(nn.Conv2d(channels, out_channels, 3, padding=1, bias=True))
    return nn.Sequential(*layers)


class N3Block2d(nn.Module):
    r"""Neural nearest neighbours block for feature maps (Plötz & Roth, 2018).

    See the module docstring for the computation. The default arguments are those of the
    N3Net Gaussian-denoising model: 8 input channels, k = 7, 10×10 patches at stride 5,
    15×15-patch windows (80×80 px), embedding and temperature CNNs of 3 convolutions with 64
    features, batch-norm on the distances, temperature bias 0.1, the authors' temperature
    placement.

    Args:
        in_channels: channels C of the input.
        k: number of neighbours.
        patch_size: patch side p.
        stride: patch grid step s.
        window: side of the search window, in patch positions.
        embed_channels: channels of the embedding (default ``in_channels``).
        embed_features: hidden width of the embedding and temperature CNNs.
        embed_depth: convolutions of each of those CNNs.
        temperature_net: learn a per-pixel log-temperature map (else ``t = bias``).
        temperature_bias: the scale of the temperature.
        score_norm: learnable ``BatchNorm1d(1)`` over all scores of the batch.
        placement: ``"official"`` or ``"paper"`` (see :func:`n3_aggregate_2d`).
        backend: ``"fast"`` or ``"reference"`` (same results).
        differences: output ``zⱼ − y`` (the paper) or the raw ``zⱼ``.

    Shape:
        - input: :math:`(B, C, H, W)` with ``H, W >= p + s·(window − 1)``
        - output: :math:`(B, (k + 1) C, H, W)`

    Example:
        >>> block = N3Block2d(in_channels=8, k=7)
        >>> block(torch.rand(1, 8, 80, 96)).shape
        torch.Size([1, 64, 80, 96])
    """

    def __init__(
        self,
        in_channels: int = 8,
        k: int = 7,
        *,
        patch_size: int = 10,
        stride: int = 5,
        window: int = 15,
        embed_channels: int | None = None,
        embed_features: int = 64,
        embed_depth: int = 3,
        temperature_net: bool = True,
        temperature_bias: float = 0.1,
        score_norm: bool = True,
        placement: Placement = "official",
        backend: Backend = "fast",
        differences: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= window * window - 1:
            raise ValueError(f"k must be an int in [1, {window * window - 1}], got {k!r}")
        if in_channels < 1 or embed_features < 1 or embed_depth < 1:
            raise ValueError(
                f"in_channels, embed_features, embed_depth must be >= 1, got {in_channels}, "
                f"{embed_features}, {embed_depth}"
            )
        if not temperature_bias > 0:
            raise ValueError(f"temperature_bias must be positive, got {temperature_bias}")
        if placement not in ("official", "paper"):
            raise ValueError(f"placement must be 'official' or 'paper', got {placement!r}")
        if backend not in ("fast", "reference"):
            raise ValueError(f"backend must be 'fast' or 'reference', got {backend!r}")
        patch_grid((patch_size, patch_size), patch_size, stride)  # validates p and s
        self.in_channels, self.k = in_channels, k
        self.patch_size, self.stride, self.window = patch_size, stride, window
        self.temperature_bias = temperature_bias
        self.placement, self.backend, self.differences = placement, backend, differences
        embed_channels = embed_channels or in_channels
        self.embedding = conv_net(in_channels, embed_features, embed_channels, embed_depth)
        self.temperature_net: nn.Sequential | None = None
        if temperature_net:
            self.temperature_net = conv_net(in_channels, embed_features, 1, embed_depth)
            # Start at t = temperature_bias everywhere.
            nn.init.zeros_(self.temperature_net[-1].weight)
            nn.init.zeros_(self.temperature_net[-1].bias)
        self.score_norm = nn.BatchNorm1d(1) if score_norm else None

    @property
    def out_channels(self) -> int:
        """Channels of the output, ``(k + 1)·in_channels``."""
        return (self.k + 1) * self.in_channels

    @property
    def min_size(self) -> int:
        """Smallest accepted image side, ``patch_size + stride·(window − 1)``."""
        return min_image_size(self.patch_size, self.stride, self.window)

    def neighbours(self, x: Tensor) -> Tensor:
        """The k neighbour images ``(B, k, C, H, W)`` of ``x``."""
        check_image_batch(x, self.in_channels, self.min_size, "N3Block2d")
        log_t = None if self.temperature_net is None else self.temperature_net(x)
        return n3_aggregate_2d(
            x, self.embedding(x), log_t, self.k, patch_size=self.patch_size,
            stride=self.stride, window=self.window, temperature_bias=self.temperature_bias,
            score_norm=self.score_norm, placement=self.placement, backend=self.backend,
        )

    def forward(self, x: Tensor) -> Tensor:
        out = n3_output_2d(x, self.neighbours(x), self.differences)
        # Keep a channels-last network channels-last: on CPU its convolutions are up to 2×
        # faster, and a plain NCHW output here would make the next stage reorder its input.
        if is_channels_last(x):
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, k={self.k}, patch_size={self.patch_size}, "
                f"stride={self.stride}, window={self.window}, "
                f"temperature_bias={self.temperature_bias}, placement={self.placement!r}, "
                f"backend={self.backend!r}")
