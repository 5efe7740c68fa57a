"""Benchmark cases: each ``CASES[name](**params)`` builds its inputs and returns the call to time.

The same builders serve the in-process timing and the fresh-process memory measurement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
}
