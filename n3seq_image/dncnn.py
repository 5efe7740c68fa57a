"""DnCNN (Zhang et al., 2017): the local denoising CNN, also the stages of N3Net."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


def _check_positive(value: int, name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


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
        _check_positive(in_channels, "in_channels")
        _check_positive(out_channels, "out_channels")
        _check_positive(depth, "depth", minimum=2)
        _check_positive(features, "features")
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
        """Builds a model from :attr:`config`."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        unknown = sorted(set(config) - set(cls().config))
        if unknown:
            raise ValueError(f"unknown DnCNN config keys {unknown}")
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

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        y = self.tail(self.body(self.head(x).relu_()))
        if self.residual:
            c = min(self.in_channels, self.out_channels)
            if c == self.out_channels:
                y = y + x[:, :c]
            else:
                y = y + nn.functional.pad(x[:, :c], (0, 0, 0, 0, 0, self.out_channels - c))
        return y

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"depth={self.depth}, features={self.features}, "
                f"batch_norm={self.batch_norm}, residual={self.residual}")
