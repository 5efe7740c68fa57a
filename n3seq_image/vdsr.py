"""VDSR (Kim, Lee & Lee, CVPR 2016): the local CNN baseline of single-image super-resolution."""

from __future__ import annotations

from typing import Any

from n3seq_image.dncnn import DnCNN


class VDSR(DnCNN):
    r"""Very deep super-resolution network on the bicubic-upsampled luma channel.

    ``depth`` 3×3 convolutions of ``features`` channels with zero padding — ``conv(1 → F) +
    ReLU``, ``depth − 2`` × ``conv(F → F) + ReLU``, ``conv(F → 1)`` — all with biases and no
    normalisation, and a global residual: the network predicts the high-frequency detail that
    is added to its input. The defaults are the paper's model (20 layers, 64 features,
    665 k parameters). It is a :class:`~n3seq_image.DnCNN` without batch-norm, which is
    exactly VDSR's layout, so the two share one implementation.

    Input and output are the same size: the low-resolution image is first upsampled with
    MATLAB-compatible bicubic interpolation (:func:`n3seq_image.imresize.imresize`), so one
    network serves every scale factor.

    Args:
        in_channels: channels of the input (1: the Y channel).
        out_channels: channels of the output.
        depth: number of convolutions (>= 2; 20 in the paper).
        features: hidden width (64 in the paper).

    Shape:
        - input: :math:`(B, C_{in}, H, W)`
        - output: :math:`(B, C_{out}, H, W)`

    Example:
        >>> net = VDSR()
        >>> sum(p.numel() for p in net.parameters())
        665921
        >>> net(torch.rand(1, 1, 41, 41)).shape
        torch.Size([1, 1, 41, 41])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 20,
        features: int = 64,
    ) -> None:
        super().__init__(in_channels, out_channels, depth, features, batch_norm=False,
                         residual=True)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-serialisable dict (see :meth:`from_config`)."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "depth": self.depth, "features": self.features}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VDSR:
        """Builds a model from :attr:`config`."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        unknown = sorted(set(config) - set(cls().config))
        if unknown:
            raise ValueError(f"unknown VDSR config keys {unknown}; known: {sorted(cls().config)}")
        return cls(**config)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"depth={self.depth}, features={self.features}")
