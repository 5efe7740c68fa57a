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

Two backends give the same result, chosen per call by :func:`choose_backend_2d` (the
mechanism of the core, :func:`n3seq._dispatch.choose_backend`): ``"reference"`` is the core
aggregation with patches as tokens (:func:`n3seq.aggregate.candidate_scores` over
:func:`~n3seq_image.windows.window_candidates_2d`, :func:`n3seq.relaxation.relax_scores`,
:func:`n3seq.aggregate.weighted_sum`) folded back into images: simple, memory-hungry (it
gathers every query's candidate patches). ``"fast"`` (default) runs
:func:`~n3seq_image.fast2d.tiled_distances` → the same relaxation →
:func:`~n3seq_image.fast2d.tiled_fold`, matrix products over tiles of queries that share their
candidates, never materialising per-query candidate patches; it needs the stride to divide the
patch size, other geometries run the reference. In both, the relaxation runs in float32 (or
float64) with autocast off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from n3seq._checks import (
    check_bool,
    check_choice,
    check_int,
    check_module_input,
    check_real,
    data_checks,
)
from n3seq._dispatch import choose_backend
from n3seq.aggregate import candidate_scores, weighted_sum
from n3seq.relaxation import Placement, relax_scores
from n3seq_image.fast2d import can_run_fast, tile_layout, tiled_distances, tiled_fold
from n3seq_image.memory_format import is_channels_last
from n3seq_image.patches import (
    _check_size_args,
    check_finite_images,
    extract_patches,
    fold_patches,
    patch_grid,
)
from n3seq_image.windows import window_candidates_2d

Backend = Literal["fast", "reference"]
#: The implementations of the image block, in order of preference (see :func:`choose_backend_2d`).
IMAGE_BACKENDS = ("fast", "reference")

#: Elements of one chunk's gathered candidates in the reference backend (~64 MiB float32).
REFERENCE_CHUNK_ELEMENTS = 1 << 24

#: Smallest accepted ``temperature_bias``: the smallest normal float32. Below it ``1 / t``
#: overflows float32 and every weight would be NaN.
MIN_TEMPERATURE = torch.finfo(torch.float32).tiny

#: Bound on the per-patch mean log temperature ``m`` (``t = bias · exp(m)``). Beyond ±15 the
#: weights are already hard kNN or uniform over the window, so clamping changes nothing a
#: model can use; without it one runaway patch of the temperature CNN overflows ``exp`` (seen
#: in training: maps reaching 40 after a few hundred steps at lr 1e-3) and poisons the step.
LOG_TEMPERATURE_BOUND = 15.0

#: Most parameters a model of this package may be built with: a guard against configs (e.g.
#: read from a weights file) that would allocate gigabytes; ~1 GiB of float32.
MAX_PARAMETERS = 1 << 28


def min_image_size(patch_size: int = 10, stride: int = 5, window: int = 15) -> int:
    """Smallest image side that holds a full search window: ``p + s·(window − 1)`` (80 px)."""
    return patch_size + stride * (window - 1)


def check_image_batch(x: Tensor, channels: int, min_size: int, who: str,
                      module: nn.Module | None = None) -> None:
    """Raises unless ``x`` is a floating ``(B, channels, H, W)`` tensor with ``H, W >= min_size``
    (and, with ``module``, has the dtype and device of its parameters).

    Only shapes and dtype; :func:`~n3seq_image.patches.check_finite_images` checks values.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"x must have shape (B, {channels}, H, W), got {tuple(x.shape)}")
    if min(x.shape[-2:]) < min_size:
        raise ValueError(
            f"{who} needs images of at least {min_size}×{min_size} px (one full N³ search "
            f"window), got x of shape {tuple(x.shape)}"
        )
    if module is not None:
        check_module_input(module, x, "x", who)


def check_temperature_bias(value: object, name: str = "temperature_bias") -> float:
    """``value`` as a float; raises unless it is a finite number >= :data:`MIN_TEMPERATURE`."""
    value = check_real(name, value, positive=True)
    if value < MIN_TEMPERATURE:
        raise ValueError(
            f"{name} must be positive, finite and at least {MIN_TEMPERATURE:.4g} (the smallest "
            f"normal float32; below it 1 / t overflows), got {value!r}"
        )
    return value


def check_parameter_count(count: int, who: str) -> None:
    """Refuses to build a model with more than :data:`MAX_PARAMETERS` parameters."""
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"this {who} config would have {count:,} parameters (more than {MAX_PARAMETERS:,}, "
            f"~{4 * count / 2**30:,.1f} GiB in float32); refusing to build it"
        )


def conv_net_parameters(in_channels: int, features: int, out_channels: int, depth: int) -> int:
    """Parameter count of :func:`conv_net` (computed without building it)."""
    if depth == 1:
        return 9 * in_channels * out_channels + out_channels
    hidden = 9 * in_channels * features + 2 * features
    hidden += (depth - 2) * (9 * features * features + 2 * features)
    return hidden + 9 * features * out_channels + out_channels


def check_finite_output(out: Tensor, who: str, peak: float, module: nn.Module | None = None,
                        hint: str = "; images are expected in [0, 1]") -> None:
    """Raises when ``out`` is not finite although the (checked) inputs were.

    One host synchronisation. The message names the overflow and the largest input
    magnitude ``peak``; non-finite parameters of ``module`` are named instead when there are.
    """
    if not data_checks() or out.numel() == 0 or out.is_meta or bool(
            torch.isfinite(out.detach()).all()):
        return
    count = int((~torch.isfinite(out.detach())).sum())
    dtype = str(out.dtype).removeprefix("torch.")
    cause = f"the values overflow {dtype} inside {who} (largest |input| {peak:.3g}{hint})"
    if module is not None:
        bad = [n for n, p in module.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            cause = f"parameters {bad[:5]} are not finite"
    error = ValueError if module is not None and "parameters" in cause else OverflowError
    raise error(
        f"{who}: the output has {count} NaN/Inf value(s) although the input is finite: {cause}"
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
    check_int("k", k, min=1)
    _check_geometry(patch_size, stride, window)
    if k > window * window - 1:
        raise ValueError(f"k={k} exceeds the {window * window - 1} candidates of a window")
    size = min_image_size(patch_size, stride, window)
    if h < size or w < size:
        raise ValueError(
            f"images must be at least {size}×{size} px (patch_size={patch_size}, "
            f"stride={stride}, window={window}), got y of shape {tuple(y.shape)}"
        )
    check_choice("placement", placement, ("official", "paper"))
    check_choice("backend", backend, IMAGE_BACKENDS)


def _check_geometry(patch_size: int, stride: int, window: int) -> None:
    _check_size_args(patch_size, stride)
    check_int("window", window, min=1)


def _patch_temperature(
    log_temperature: Tensor | None, batch: int, num: int, patch_size: int, stride: int,
    bias: float, like: Tensor,
) -> Tensor:
    """Per-patch temperature ``(B, N)``: bias · exp(mean of the map over the padded patch).

    The mean is taken in float32 or wider (the map may come from a bf16-autocast convolution) and
    clamped to ±:data:`LOG_TEMPERATURE_BOUND`.
    """
    if log_temperature is None:
        return like.new_full((batch, num), bias)
    wide = log_temperature.to(torch.promote_types(log_temperature.dtype, torch.float32))
    mean = extract_patches(wide, patch_size, stride).mean(-1)
    bound = LOG_TEMPERATURE_BOUND
    return bias * mean.clamp(-bound, bound).exp()


def choose_backend_2d(backend: str, patch_size: int, stride: int) -> str:
    """The image backend to run: ``backend`` where it can run, else ``"reference"``.

    ``"fast"`` needs the stride to divide the patch size
    (:func:`~n3seq_image.fast2d.can_run_fast`); ``"reference"`` runs everywhere.

    Raises:
        ValueError: if ``backend`` is not ``"fast"`` or ``"reference"``.
    """
    runnable = dict(zip(IMAGE_BACKENDS, (can_run_fast(patch_size, stride), True), strict=True))
    return choose_backend("backend", backend, runnable)


def _batch_norm_scores(score_norm: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``score_norm`` over all scores ``(B, N, O)`` of the batch, seen as ``(B, 1, N·O)``."""
    def transform(scores: Tensor) -> Tensor:
        return score_norm(scores.reshape(scores.shape[0], 1, -1)).reshape(scores.shape)

    return transform


def _weights(
    scores: Tensor, temperature: Tensor, k: int, score_norm: Callable[[Tensor], Tensor] | None,
    placement: str,
) -> Tensor:
    """Soft kNN weights ``(B, N, k, O)`` from scores ``(B, N, O)`` (the core relaxation).

    As in the authors' code, the batch-norm sees the scores (negative distances).
    """
    transform = None if score_norm is None else _batch_norm_scores(score_norm)
    return relax_scores(scores, k, temperature[..., None], placement=placement,  # type: ignore
                        score_transform=transform)


def _reference(
    y: Tensor, embedding: Tensor, temperature: Tensor, k: int, patch_size: int, stride: int,
    window: int, score_norm: Callable[[Tensor], Tensor] | None, placement: str,
) -> Tensor:
    """The core aggregation over :func:`~n3seq_image.windows.window_candidates_2d`, folded.

    Patches are tokens; the candidate scores and the weighted sums are taken in chunks of
    queries (their gathered candidate patches are the memory), the relaxation over all scores
    at once (the batch-norm needs them all).
    """
    b, _, h, w = y.shape
    grid = patch_grid((h, w), patch_size, stride)
    yp = extract_patches(y, patch_size, stride)
    ep = extract_patches(embedding, patch_size, stride)
    cand = window_candidates_2d(grid, window, exclude_self=True, device=y.device)
    n, o = cand.shape[1:]
    step = max(1, REFERENCE_CHUNK_ELEMENTS // (b * o * max(ep.shape[-1], yp.shape[-1])))
    chunks = [(q, min(q + step, n)) for q in range(0, n, step)]
    scores = torch.cat(
        [candidate_scores(ep[:, q0:q1], ep, cand[:, q0:q1])[0] for q0, q1 in chunks], 1
    )
    weights = _weights(scores, temperature, k, score_norm, placement)
    z = torch.cat([weighted_sum(weights[:, q0:q1], yp, cand[:, q0:q1]) for q0, q1 in chunks], 1)
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
        The neighbour images ``z₁ … zₖ`` stacked on dim 1 (empty for an empty batch).

    Raises:
        TypeError: a tensor is not floating-point, or an integer argument is not an int.
        ValueError: a bad shape or option; NaN/inf in ``y``, ``embedding`` or
            ``log_temperature`` (the message names the tensor and its first bad pixel
            ``(b, c, y, x)``); an output that overflows although the inputs are finite.

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
    temperature_bias = check_temperature_bias(temperature_bias)
    peak = check_finite_images(("y", y), ("embedding", embedding),
                               ("log_temperature", log_temperature))
    out = _aggregate(y, embedding, log_temperature, k, patch_size, stride, window,
                     temperature_bias, score_norm, placement, backend)
    check_finite_output(out, "n3_aggregate_2d", peak, hint="")
    return out


def _aggregate(
    y: Tensor, embedding: Tensor, log_temperature: Tensor | None, k: int, patch_size: int,
    stride: int, window: int, temperature_bias: float,
    score_norm: Callable[[Tensor], Tensor] | None, placement: str, backend: str,
) -> Tensor:
    """:func:`n3_aggregate_2d` on checked arguments (no data checks, no host syncs)."""
    b, c, h, w = y.shape
    if b == 0:  # an empty batch has nothing to search: an empty result, as torch ops give
        return y.new_zeros(0, k, c, h, w)
    n1, n2 = patch_grid((h, w), patch_size, stride)
    temperature = _patch_temperature(log_temperature, b, n1 * n2, patch_size, stride,
                                     temperature_bias, y)
    if choose_backend_2d(backend, patch_size, stride) == "reference":
        return _reference(y, embedding, temperature, k, patch_size, stride, window, score_norm,
                          placement)
    layout = tile_layout(y, k, patch_size, stride, window)
    scores = -tiled_distances(embedding, layout)
    return tiled_fold(y, _weights(scores, temperature, k, score_norm, placement), layout)


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


def block2d_parameters(in_channels: int, embed_channels: int, embed_features: int,
                       embed_depth: int, temperature_net: bool = True,
                       score_norm: bool = True) -> int:
    """Parameter count of an :class:`N3Block2d` (computed without building it)."""
    count = conv_net_parameters(in_channels, embed_features, embed_channels, embed_depth)
    if temperature_net:
        count += conv_net_parameters(in_channels, embed_features, 1, embed_depth)
    return count + (2 if score_norm else 0)


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
        in_channels = check_int("in_channels", in_channels, min=1)
        _check_geometry(patch_size, stride, window)
        patch_size, stride, window = int(patch_size), int(stride), int(window)
        k = check_int("k", k, min=1, max=window * window - 1)
        embed_channels = in_channels if embed_channels is None else check_int(
            "embed_channels", embed_channels, min=1)
        embed_features = check_int("embed_features", embed_features, min=1)
        embed_depth = check_int("embed_depth", embed_depth, min=1)
        temperature_bias = check_temperature_bias(temperature_bias)
        temperature_net = check_bool("temperature_net", temperature_net)
        score_norm = check_bool("score_norm", score_norm)
        differences = check_bool("differences", differences)
        check_choice("placement", placement, ("official", "paper"))
        check_choice("backend", backend, IMAGE_BACKENDS)
        check_parameter_count(
            block2d_parameters(in_channels, embed_channels, embed_features, embed_depth,
                               temperature_net, score_norm), "N3Block2d")
        self.in_channels, self.k = in_channels, k
        self.patch_size, self.stride, self.window = patch_size, stride, window
        self.temperature_bias = temperature_bias
        self.placement, self.backend, self.differences = placement, backend, differences
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

    def neighbours(self, x: Tensor, *, validate: bool = True) -> Tensor:
        """The k neighbour images ``(B, k, C, H, W)`` of ``x`` (see :meth:`forward`)."""
        peak = self._check(x, validate)
        out = self._neighbours(x)
        if validate:
            check_finite_output(out, "N3Block2d", peak, self)
        return out

    def _check(self, x: Tensor, validate: bool) -> float:
        check_image_batch(x, self.in_channels, self.min_size, "N3Block2d", self)
        return check_finite_images(("x", x)) if validate else 0.0

    def _neighbours(self, x: Tensor) -> Tensor:
        log_t = None if self.temperature_net is None else self.temperature_net(x)
        return _aggregate(
            x, self.embedding(x), log_t, self.k, self.patch_size, self.stride, self.window,
            self.temperature_bias, self.score_norm, self.placement, self.backend,
        )

    def forward(self, x: Tensor, *, validate: bool = True) -> Tensor:
        """``[x, z₁ − x, …, zₖ − x]`` (or ``[x, z₁, …, zₖ]``); empty for an empty batch.

        Args:
            x: feature maps ``(B, C, H, W)``, ``H, W >= min_size``.
            validate: check ``x`` for NaN/inf (naming the first bad pixel ``(b, c, y, x)``)
                and the output for overflow: two host synchronisations. Callers that
                checked their input already (e.g. :class:`~n3seq_image.N3Net`) pass
                ``False``.

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ValueError: wrong shape, too small, non-finite values, or an overflow inside.
        """
        peak = self._check(x, validate)
        out = n3_output_2d(x, self._neighbours(x), self.differences)
        # Keep a channels-last network channels-last: on CPU its convolutions are up to 2×
        # faster, and a plain NCHW output here would make the next stage reorder its input.
        if is_channels_last(x):
            out = out.contiguous(memory_format=torch.channels_last)
        if validate:
            check_finite_output(out, "N3Block2d", peak, self)
        return out

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, k={self.k}, patch_size={self.patch_size}, "
                f"stride={self.stride}, window={self.window}, "
                f"temperature_bias={self.temperature_bias}, placement={self.placement!r}, "
                f"backend={self.backend!r}")
