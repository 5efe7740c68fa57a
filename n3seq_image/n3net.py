"""N3Net (Plötz & Roth, 2018): DnCNN stages interleaved with N³ blocks."""

from __future__ import annotations

import inspect
import os
from typing import Any

from torch import Tensor, nn

from n3seq._checks import check_bool, check_choice, check_int
from n3seq_image._official_format import convert_state_dict, read_state_dict
from n3seq_image.block2d import (
    IMAGE_BACKENDS,
    Backend,
    N3Block2d,
    Placement,
    _check_geometry,
    block2d_parameters,
    check_finite_output,
    check_image_batch,
    check_parameter_count,
    check_temperature_bias,
    min_image_size,
)
from n3seq_image.dncnn import MAX_DEPTH, DnCNN, dncnn_parameters
from n3seq_image.patches import check_finite_images

#: Most DnCNN stages an N3Net may have.
MAX_STAGES = 64


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
        # Every field is type- and range-checked, and the size bounded, before anything is
        # allocated: configs also come from weights files (see ``from_config``).
        in_channels = check_int("in_channels", in_channels, min=1)
        out_channels = check_int("out_channels", out_channels, min=1)
        stages = check_int("stages", stages, min=1, max=MAX_STAGES)
        depth = check_int("depth", depth, min=2, max=MAX_DEPTH)
        features = check_int("features", features, min=1)
        stage_channels = check_int("stage_channels", stage_channels, min=1)
        _check_geometry(patch_size, stride, window)
        patch_size, stride, window = int(patch_size), int(stride), int(window)
        k = check_int("k", k, min=0, max=window * window - 1)
        embed_features = check_int("embed_features", embed_features, min=1)
        embed_depth = check_int("embed_depth", embed_depth, min=1, max=MAX_DEPTH)
        temperature_bias = check_temperature_bias(temperature_bias)
        score_norm = check_bool("score_norm", score_norm)
        batch_norm = check_bool("batch_norm", batch_norm)
        check_choice("placement", placement, ("official", "paper"))
        check_choice("backend", backend, IMAGE_BACKENDS)
        check_parameter_count(_parameters(
            in_channels, out_channels, stages, depth, features, stage_channels, k,
            embed_features, embed_depth, score_norm, batch_norm), "N3Net")
        checked = locals()  # the arguments after the checks above, by their names
        self._config: dict[str, Any] = {key: checked[key] for key in _CONFIG_KEYS}
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
        """Builds a model from :attr:`config` (e.g. read back from a checkpoint's JSON).

        Every field is type- and range-checked and the parameter count bounded (see
        :data:`~n3seq_image.block2d.MAX_PARAMETERS`) before anything is allocated, so a hostile
        config such as ``{"features": 10**8, "depth": 100}`` is refused with a message.

        Raises:
            TypeError: ``config`` is not a dict, or a field has the wrong type (e.g. a float
                where an int is needed).
            ValueError: an unknown key, a value out of range, or a model too large.
        """
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        known = set(_CONFIG_KEYS)
        unknown = sorted((str(key) for key in config if key not in known), key=str)
        if unknown:
            raise ValueError(f"unknown N3Net config keys {unknown}; known: {sorted(known)}")
        return cls(**config)

    @classmethod
    def from_official_checkpoint(cls, path: str | os.PathLike[str]) -> N3Net:
        """Loads the N3Net authors' released Gaussian-denoising weights, in eval mode.

        The file is a torch file holding ``{"net": state_dict, "epoch": int}`` (a bare state
        dict is accepted too); it is read with ``weights_only=True``, and their key names are
        mapped onto ours (the table is in :mod:`n3seq_image.official`). The model is
        ``N3Net(placement="official")``: their code divides the scores by the temperature once
        and then runs the relaxation at t = 1.

        Raises:
            FileNotFoundError: when ``path`` does not exist.
            ValueError: when the file is not such a checkpoint (naming every missing,
                unexpected and mis-shaped key).
        """
        state = read_state_dict(path)
        model = cls(placement="official")
        model.load_state_dict(convert_state_dict(state, model))
        return model.eval()

    @property
    def min_size(self) -> int:
        """Smallest accepted image side (80 px by default; 1 without N³ blocks)."""
        if self.k == 0 or len(self.n3blocks) == 0:
            return 1
        c = self._config
        return min_image_size(c["patch_size"], c["stride"], c["window"])

    def set_backend(self, backend: Backend) -> N3Net:
        """Switches every N³ block to ``backend`` (``"fast"`` or ``"reference"``)."""
        check_choice("backend", backend, IMAGE_BACKENDS)
        for block in self.n3blocks:
            block.backend = backend
        self._config["backend"] = backend
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Denoises ``x``; an empty batch gives an empty output.

        The image is checked once here (one host synchronisation; the stages and blocks run
        unchecked) and the output once for overflow.

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ValueError: wrong shape or too small; NaN/inf in ``x`` (the message names the
                first bad pixel ``(b, c, y, x)`` and its value); an output that overflows
                although ``x`` is finite.
        """
        check_image_batch(x, self.in_channels, self.min_size, "N3Net", self)
        peak = check_finite_images(("x", x))
        for i, stage in enumerate(self.stages):
            x = stage(x, validate=False)
            if i < len(self.n3blocks):
                x = self.n3blocks[i](x, validate=False)
        check_finite_output(x, "N3Net", peak, self)
        return x


def _parameters(in_channels: int, out_channels: int, stages: int, depth: int, features: int,
                stage_channels: int, k: int, embed_features: int, embed_depth: int,
                score_norm: bool, batch_norm: bool) -> int:
    """Parameter count of an :class:`N3Net` (computed without building it)."""
    between = (k + 1) * stage_channels
    count = 0
    for i in range(stages):
        c_in = in_channels if i == 0 else between
        c_out = out_channels if i == stages - 1 else stage_channels
        count += dncnn_parameters(c_in, c_out, depth, features, batch_norm)
    if k > 0:
        count += (stages - 1) * block2d_parameters(
            stage_channels, stage_channels, embed_features, embed_depth, True, score_norm)
    return count


#: The keys of :attr:`N3Net.config`: the constructor's arguments, written once (the signature).
_CONFIG_KEYS: tuple[str, ...] = tuple(inspect.signature(N3Net.__init__).parameters)[1:]
