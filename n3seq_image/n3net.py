"""N3Net (Plötz & Roth, 2018): DnCNN stages interleaved with N³ blocks."""

from __future__ import annotations

import os
from typing import Any

from torch import Tensor, nn

from n3seq_image.block2d import (
    Backend,
    N3Block2d,
    Placement,
    check_image_batch,
    min_image_size,
)
from n3seq_image.dncnn import DnCNN


class N3Net(nn.Module):
    r"""The N3Net denoiser; the defaults are the paper's Gaussian-denoising model.

    ``stages`` DnCNN stages (each ``depth`` convolutions of ``features`` channels) with an
    :class:`~n3seq_image.N3Block2d` between consecutive stages. Stage 1 maps the image
    (``in_channels``) to ``stage_channels`` (8); each N³ block turns those into
    ``(k + 1)·stage_channels`` (64) channels ``[y, z₁ − y, …, zₖ − y]``, the input of the next
    stage; the last stage outputs ``out_channels``. Every stage adds its input to the first
    ``min(in, out)`` output channels; there is no global skip connection. Images are float in
    [0, 1]; the network predicts the clean image.

    ``k = 0`` removes the N³ blocks (stages then pass ``stage_channels`` to each other): the
    DnCNN-only ablation with the same convolutions.

    Args:
        in_channels: image channels (1: grayscale).
        out_channels: output channels.
        stages: number of DnCNN stages (>= 1).
        depth: convolutions per stage.
        features: hidden width of the stages.
        stage_channels: channels between stages (input of the N³ blocks).
        k: neighbours of each N³ block (0: no N³ blocks).
        patch_size: N³ patch side.
        stride: N³ patch grid step.
        window: N³ search window side in patch positions.
        embed_features: hidden width of the embedding and temperature CNNs.
        embed_depth: convolutions of each of those CNNs.
        temperature_bias: scale of the N³ temperature.
        score_norm: batch-norm on the N³ distance scores.
        placement: ``"official"`` (the authors' released code, needed by their weights; the
            default) or ``"paper"`` (temperature inside every relaxation round).
        backend: ``"fast"`` or ``"reference"`` N³ implementation (same results).
        batch_norm: BatchNorm in the stages' hidden convolutions (the denoiser's DnCNN
            stages); ``False`` gives VDSR-style stages (biased convolutions and ReLUs only),
            as in the super-resolution N3Net (:mod:`n3seq_image.sr_models`).

    Shape:
        - input: :math:`(B, C_{in}, H, W)` with ``H, W >= 80`` when ``k > 0``
        - output: :math:`(B, C_{out}, H, W)`

    Example:
        >>> net = N3Net()
        >>> net.eval()(torch.rand(1, 1, 80, 96)).shape
        torch.Size([1, 1, 80, 96])
        >>> N3Net.from_config(net.config).config == net.config
        True
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        stages: int = 3,
        depth: int = 6,
        features: int = 64,
        stage_channels: int = 8,
        k: int = 7,
        patch_size: int = 10,
        stride: int = 5,
        window: int = 15,
        embed_features: int = 64,
        embed_depth: int = 3,
        temperature_bias: float = 0.1,
        score_norm: bool = True,
        placement: Placement = "official",
        backend: Backend = "fast",
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
            raise ValueError(f"stages must be an int >= 1, got {stages!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be an int >= 0, got {k!r}")
        self._config: dict[str, Any] = {
            "in_channels": in_channels, "out_channels": out_channels, "stages": stages,
            "depth": depth, "features": features, "stage_channels": stage_channels, "k": k,
            "patch_size": patch_size, "stride": stride, "window": window,
            "embed_features": embed_features, "embed_depth": embed_depth,
            "temperature_bias": float(temperature_bias), "score_norm": bool(score_norm),
            "placement": placement, "backend": backend, "batch_norm": bool(batch_norm),
        }
        self.in_channels, self.out_channels, self.k = in_channels, out_channels, k
        between = (k + 1) * stage_channels
        self.stages = nn.ModuleList()
        for i in range(stages):
            c_in = in_channels if i == 0 else between
            c_out = out_channels if i == stages - 1 else stage_channels
            self.stages.append(DnCNN(c_in, c_out, depth, features, batch_norm=batch_norm,
                                     residual=True))
        self.n3blocks = nn.ModuleList()
        if k > 0:
            for _ in range(stages - 1):
                self.n3blocks.append(N3Block2d(
                    stage_channels, k, patch_size=patch_size, stride=stride, window=window,
                    embed_features=embed_features, embed_depth=embed_depth,
                    temperature_bias=temperature_bias, score_norm=score_norm,
                    placement=placement, backend=backend,
                ))

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-serialisable dict (see :meth:`from_config`)."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> N3Net:
        """Builds a model from :attr:`config` (e.g. read back from a checkpoint's JSON)."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        known = set(_CONFIG_KEYS)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown N3Net config keys {unknown}; known: {sorted(known)}")
        return cls(**config)

    @classmethod
    def from_official_checkpoint(cls, path: str | os.PathLike[str]) -> N3Net:
        """Loads the N3Net authors' released Gaussian-denoising weights.

        See :func:`n3seq_image.official.load_official_checkpoint`.
        """
        from n3seq_image.official import load_official_checkpoint

        return load_official_checkpoint(path)

    @property
    def min_size(self) -> int:
        """Smallest accepted image side (80 px by default; 1 without N³ blocks)."""
        if self.k == 0 or len(self.n3blocks) == 0:
            return 1
        c = self._config
        return min_image_size(c["patch_size"], c["stride"], c["window"])

    def set_backend(self, backend: Backend) -> N3Net:
        """Switches every N³ block to ``backend`` (``"fast"`` or ``"reference"``)."""
        if backend not in ("fast", "reference"):
            raise ValueError(f"backend must be 'fast' or 'reference', got {backend!r}")
        for block in self.n3blocks:
            block.backend = backend
        self._config["backend"] = backend
        return self

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, self.in_channels, self.min_size, "N3Net")
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.n3blocks):
                x = self.n3blocks[i](x)
        return x


_CONFIG_KEYS = (
    "in_channels", "out_channels", "stages", "depth", "features", "stage_channels", "k",
    "patch_size", "stride", "window", "embed_features", "embed_depth", "temperature_bias",
    "score_norm", "placement", "backend", "batch_norm",
)
