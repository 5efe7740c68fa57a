"""The N³ block for token sequences and sets: ``(B, T, D)`` → ``(B, T, (k + 1)·D)``."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from n3seq._checks import check_floating, check_k, check_rank
from n3seq.aggregate import knn_aggregate, window_candidates


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Two-layer perceptron ``Linear → ReLU → Linear``, the default embedding network."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def n3_output(x: Tensor, neighbours: Tensor, differences: bool = True) -> Tensor:
    """Concatenates ``x`` with its k neighbours: ``[x, x̂₁ − x, …, x̂ₖ − x]`` (or raw ``x̂ⱼ``).

    Shape:
        - x: :math:`(B, T, D)`
        - neighbours: :math:`(B, T, k, D)`
        - output: :math:`(B, T, (k + 1) D)`
    """
    if differences:
        neighbours = neighbours - x[:, :, None, :]
    return torch.cat([x, rearrange(neighbours, "b t k d -> b t (k d)")], dim=-1)


class N3Block(nn.Module):
    r"""Neural nearest neighbours block for ``(B, T, D)`` token tensors.

    An embedding network maps each token to the space where neighbours are matched; a
    temperature network gives each token its own positive temperature
    ``t = temperature_bias · exp(log_t)``. :func:`~n3seq.knn_aggregate` (query excluded) then
    forms k soft neighbours of every token from the block's input, and the output is
    ``[x, x̂₁ − x, …, x̂ₖ − x]`` concatenated on the last dim.

    Args:
        dim: token feature size D.
        k: number of neighbours.
        embed_dim: size of the matching embedding (default: ``dim``).
        hidden: hidden width of the default MLPs (default: ``max(2·dim, 16)``).
        embedding: any module ``(B, T, D) → (B, T, E)``; replaces the default MLP.
        temperature_net: any module ``(B, T, D) → (B, T, 1)`` producing ``log_t``;
            ``None`` builds the default MLP, ``False`` uses a fixed temperature.
        temperature_bias: the scale of the temperature (the paper uses 0.1).
        radius: ``None`` to search the whole set, or the radius of a 1-D window of tokens.
        differences: output ``x̂ⱼ − x`` (the paper) or the raw neighbours ``x̂ⱼ``.

    Shape:
        - input: :math:`(B, T, D)`, optional key padding ``mask`` :math:`(B, T)` (with
          ``radius``, sequences must be right-padded: ``True`` for a prefix of each row)
        - output: :math:`(B, T, (k + 1) D)`

    Example:
        >>> block = N3Block(dim=16, k=4)
        >>> block(torch.randn(2, 50, 16)).shape
        torch.Size([2, 50, 80])
    """

    def __init__(
        self,
        dim: int,
        k: int = 7,
        *,
        embed_dim: int | None = None,
        hidden: int | None = None,
        embedding: nn.Module | None = None,
        temperature_net: nn.Module | bool | None = None,
        temperature_bias: float = 0.1,
        radius: int | None = None,
        differences: bool = True,
    ) -> None:
        super().__init__()
        check_k(k)
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if not temperature_bias > 0 or not math.isfinite(temperature_bias):
            raise ValueError(f"temperature_bias must be positive, got {temperature_bias}")
        if radius is not None and (radius < 1 or 2 * radius < k):
            raise ValueError(f"radius must be >= 1 and give 2*radius >= k={k}, got {radius}")
        embed_dim = embed_dim or dim
        hidden = hidden or max(2 * dim, 16)
        self.dim, self.k, self.radius, self.differences = dim, k, radius, differences
        self.temperature_bias = temperature_bias
        self.embedding = embedding if embedding is not None else mlp(dim, hidden, embed_dim)
        if temperature_net is None or temperature_net is True:
            temperature_net = mlp(dim, hidden, 1)
            # Start at t = temperature_bias: log_t = 0 for every token.
            nn.init.zeros_(temperature_net[-1].weight)
            nn.init.zeros_(temperature_net[-1].bias)
        self.temperature_net = temperature_net or None

    @property
    def out_dim(self) -> int:
        """Feature size of the output, ``(k + 1)·dim``."""
        return (self.k + 1) * self.dim

    def temperature(self, x: Tensor) -> Tensor:
        """Per-token temperature ``(B, T)`` for input ``x``."""
        if self.temperature_net is None:
            return x.new_full(x.shape[:2], self.temperature_bias)
        log_t = rearrange(self.temperature_net(x), "b t 1 -> b t")
        return self.temperature_bias * log_t.float().exp()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        check_floating(x, "x")
        check_rank(x, "x", "B, T, D")
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have D={self.dim} features, got shape {tuple(x.shape)}")
        emb = self.embedding(x)
        candidates = None
        if self.radius is not None:
            # Right-padded sequences: keep each window inside its own sequence.
            lengths = None if mask is None else mask.expand(x.shape[:2]).sum(-1)
            candidates = window_candidates(x.shape[1], self.radius, lengths, device=x.device)
        neighbours = knn_aggregate(
            emb, emb, x, self.k, self.temperature(x), candidates=candidates, mask=mask,
            exclude_self=True,
        )
        return n3_output(x, neighbours.to(x.dtype), self.differences)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, k={self.k}, radius={self.radius}, "
                f"temperature_bias={self.temperature_bias}, differences={self.differences}")
