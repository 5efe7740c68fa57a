"""DnCNN (Zhang et al., 2017): the local denoising CNN, also the stages of N3Net."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from n3seq._checks import check_bool, check_int, check_module_input
from n3seq_image.block2d import check_finite_output, check_parameter_count
from n3seq_image.patches import check_finite_images

#: Most convolutions a DnCNN may have (DnCNN-17 has 17, VDSR 20).
MAX_DEPTH = 1024

#: The keys of :attr:`DnCNN.config`.
CONFIG_KEYS = ("in_channels", "out_channels", "depth", "features", "batch_norm", "residual")


def dncnn_parameters(in_channels: int, out_channels: int, depth: int, features: int,
                     batch_norm: bool = True) -> int:
    """Parameter count of a :class:`DnCNN` (computed without building it)."""
    hidden = 9 * features * features + (2 * features if batch_norm else features)
    return (9 * in_channels * features + features + (depth - 2) * hidden
            + 9 * features * out_channels + out_channels)


class DnCNN(nn.Module):
    r"""The DnCNN denoiser, with the layout of the N3Net authors' stages.

    Layers (3×3 convolutions, zero padding 1): ``conv(in → F, bias) + ReLU``, then
    ``depth − 2`` times ``conv(F → F) + BatchNorm + ReLU`` (the convolution has no bias when
    batch-norm follows it), then ``conv(F → out, bias)``. With ``residual=True`` the input is
    added to the first ``min(in, out)`` output channels, so the network predicts a correction
    (for a 1 → 1 denoiser: the negative noise). DnCNN-17 is
    ``DnCNN(1, 1, depth=17, features=64)``.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        depth: number of convolutions (>= 2).
        features: width F of the hidden layers.
        batch_norm: use BatchNorm after the hidden convolutions.
        residual: add the input to the first ``min(in, out)`` output channels.

    Shape:
        - input: :math:`(B, C_{in}, H, W)`
        - output: :math:`(B, C_{out}, H, W)`

    Example:
        >>> net = DnCNN(1, 1, depth=17, features=64)
        >>> net(torch.rand(2, 1, 40, 40)).shape
        torch.Size([2, 1, 40, 40])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 17,
        features: int = 64,
        batch_norm: bool = True,
        residual: bool = True,
    ) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels, min=1)
        out_channels = check_int("out_channels", out_channels, min=1)
        depth = check_int("depth", depth, min=2, max=MAX_DEPTH)
        features = check_int("features", features, min=1)
        batch_norm = check_bool("batch_norm", batch_norm)
        residual = check_bool("residual", residual)
        check_parameter_count(
            dncnn_parameters(in_channels, out_channels, depth, features, batch_norm), "DnCNN")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.depth, self.features = depth, features
        self.batch_norm, self.residual = batch_norm, residual
        self.head = nn.Conv2d(in_channels, features, 3, padding=1, bias=True)
        body: list[nn.Module] = []
        for _ in range(depth - 2):
            body.append(nn.Conv2d(features, features, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                body.append(nn.BatchNorm2d(features))
            body.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*body)
        self.tail = nn.Conv2d(features, out_channels, 3, padding=1, bias=True)
        self.reset_parameters()

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-serialisable dict (see :meth:`from_config`)."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "depth": self.depth, "features": self.features,
                "batch_norm": self.batch_norm, "residual": self.residual}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DnCNN:
        """Builds a model from :attr:`config`, every field checked before any allocation.

        Raises:
            TypeError: ``config`` is not a dict, or a field has the wrong type.
            ValueError: an unknown key, a value out of range, or a model too large (more than
                :data:`~n3seq_image.block2d.MAX_PARAMETERS` parameters).
        """
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        unknown = sorted((str(key) for key in config if key not in CONFIG_KEYS), key=str)
        if unknown:
            raise ValueError(f"unknown DnCNN config keys {unknown}; known: {list(CONFIG_KEYS)}")
        return cls(**config)

    def reset_parameters(self) -> None:
        """He-normal convolutions with zero biases; BatchNorm at identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, *, validate: bool = True) -> Tensor:
        """Denoises (or maps) ``x``; an empty batch gives an empty output.

        Args:
            x: images ``(B, in_channels, H, W)``.
            validate: check ``x`` for NaN/inf (naming the first bad pixel ``(b, c, y, x)``)
                and the output for overflow: two host synchronisations. Callers that
                checked their input already (e.g. :class:`~n3seq_image.N3Net`) pass
                ``False``.

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ValueError: wrong shape, non-finite values, or an overflow inside the network.
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        check_module_input(self, x, "x", "DnCNN")
        if 0 in x.shape[-2:]:  # no pixel: an empty output (convolutions refuse H or W = 0)
            return x.new_zeros(x.shape[0], self.out_channels, *x.shape[-2:])
        peak = check_finite_images(("x", x)) if validate else 0.0
        y = self.tail(self.body(self.head(x).relu_()))
        if self.residual:
            c = min(self.in_channels, self.out_channels)
            if c == self.out_channels:
                y = y + x[:, :c]
            else:
                y = y + nn.functional.pad(x[:, :c], (0, 0, 0, 0, 0, self.out_channels - c))
        if validate:
            check_finite_output(y, "DnCNN", peak, self)
        return y

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"depth={self.depth}, features={self.features}, "
                f"batch_norm={self.batch_norm}, residual={self.residual}")
