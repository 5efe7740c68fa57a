"""The fast backend of :func:`~n3seq_image.block2d.n3_aggregate_2d`: tiles of query patches.

When the stride ``s`` divides the patch size ``p`` (N3Net: 10 and 5), the padded maps split
into ``s × s`` blocks and every patch is a ``P × P`` square of blocks (``P = p / s``). Two
patches at a given offset differ block by block at that same offset, so

* the distance of two patches is a box sum (over the ``P × P`` blocks) of block distances,
  i.e. ``‖q‖² + ‖c‖² − 2 q·c`` with the cross term a box sum of a block Gram matrix;
* folding the k neighbour patches back into an image sums, for every block, the weights of
  the ``P²`` patches that contain it, each shifted to the same offset: one weight matrix per
  block instead of one per patch, and a single product with the candidate *blocks*.

The queries of a ``tile × tile`` square of patch positions share one rectangle of candidates,
the union of their search windows (at most ``tile + window − 1`` positions per side), so each
tile costs two small matrix products: block Gram (distances) and block weights × candidate
blocks (aggregation). Windowed scores are picked from the tile's dense distances in exactly
the order of the reference backend, so batch-norm statistics and the relaxation are shared.
Embeddings are centred per channel first (distances do not change) so that the expanded
square does not cancel. No per-query candidate patches are ever gathered: besides the
relaxation's ``(B, N, k, window² − 1)`` weights, memory is a few times the feature map.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from n3seq_image.patches import pad_for_patches, patch_grid, patch_padding
from n3seq_image.windows import window_starts

#: Side of a tile of query patch positions.
TILE = 8
#: Elements of the aggregation matrices processed at once (~16 MiB in float32: larger groups
#: spill out of the caches, smaller ones pay per-operation overheads).
GROUP_ELEMENTS = 1 << 22


def _axis_layout(n: int, window: int, tile: int, device: torch.device) -> dict[str, Tensor]:
    """Tiling of one axis of the patch grid (``n`` positions), computed on the CPU.

    The small index tensors are built on the host and copied to ``device`` once (``host``
    keeps the CPU copy for cache keys), so that the forward pass never reads device memory
    back: no host synchronisation on an accelerator.

    Returns ``queries (T, tile)`` (positions of each tile, clamped at the end),
    ``first (T,)`` (first candidate of the tile's union of windows, ``span`` long),
    ``local (T, tile)`` (where each query's window starts inside its union) and
    ``own (T, tile)`` (the query's place in its window).
    """
    span = min(tile + window - 1, n)
    count = -(-n // tile)
    cpu = torch.device("cpu")  # explicit: also under a ``with torch.device(...)`` context
    queries = torch.arange(count, device=cpu)[:, None] * tile + torch.arange(tile, device=cpu)
    queries = queries.clamp(max=n - 1)
    starts = window_starts(n, window, cpu)
    first = starts[queries[:, 0]].clamp(max=n - span)
    local = starts[queries] - first[:, None]
    own = queries - starts[queries]
    host = {"queries": queries, "first": first, "local": local, "own": own}
    layout: dict = {key: value.to(device) for key, value in host.items()}
    layout["span"], layout["host"] = span, host
    return layout


def supports_fast(patch_size: int, stride: int) -> bool:
    """The fast backend needs the stride to divide the patch size."""
    return patch_size % stride == 0


def aggregate_tiled(
    y: Tensor, embedding: Tensor, temperature: Tensor, k: int, patch_size: int, stride: int,
    window: int, weights_fn: Callable[[Tensor, Tensor], Tensor], tile: int = TILE,
) -> Tensor:
    """Same contract as the reference backend: ``(B, k, C, H, W)`` neighbour images."""
    b, _, h, w = y.shape
    s, pb = stride, patch_size // stride
    n1, n2 = patch_grid((h, w), patch_size, stride)
    dev = y.device
    # A small axis is one tile: its union of windows is the whole axis anyway.
    th = n1 if n1 <= tile + window - 1 else tile
    tw = n2 if n2 <= tile + window - 1 else tile
    rows = _axis_layout(n1, window, th, dev)
    cols = _axis_layout(n2, window, tw, dev)
    l1, l2 = rows["span"], cols["span"]
    t1n, t2n = rows["queries"].shape[0], cols["queries"].shape[0]
    ext = pb - 1
    # Block extents of a query tile (th + ext, tw + ext) and of its union (lb1, lb2).
    bh, bw, lb1, lb2 = th + ext, tw + ext, l1 + ext, l2 + ext

    # Block vectors of the padded maps, with the block grid padded at the end so that every
    # tile of queries (tile + ext blocks per side) is a plain slice.
    e = pad_for_patches(embedding, patch_size, stride)
    e = e - embedding.detach().mean(dim=(2, 3), keepdim=True)
    eb = rearrange(e, "b c (i u) (j v) -> b i j (c u v)", u=s, v=s)
    yb = rearrange(pad_for_patches(y, patch_size, stride), "b c (i u) (j v) -> b i j (c u v)",
                   u=s, v=s)
    m1, m2 = eb.shape[1:3]
    eb_q = F.pad(eb, (0, 0, 0, t2n * tw + ext - m2, 0, t1n * th + ext - m1))
    c_bcols = (cols["first"][:, None] + torch.arange(lb2, device=dev)).flatten()
    # Tile rows are processed in groups whose aggregation matrices stay ~16 MiB: few, large
    # operations (under autograd and on busy CPUs many small ones cost more than their work).
    per_row = b * t2n * k * bh * bw * lb1 * lb2
    group = max(1, min(t1n, GROUP_ELEMENTS // per_row))
    groups = [(g0, min(g0 + group, t1n)) for g0 in range(0, t1n, group)]

    def query_blocks(g0: int, g1: int) -> Tensor:
        x = eb_q[:, g0 * th : g1 * th + ext].unfold(1, bh, th).unfold(2, bw, tw)
        return rearrange(x, "b g t d i j -> (b g t) (i j) d")

    def cand_blocks(src: Tensor, g0: int, g1: int) -> Tensor:
        brows = (rows["first"][g0:g1, None] + torch.arange(lb1, device=dev)).flatten()
        x = src.index_select(1, brows).index_select(2, c_bcols)
        return rearrange(x, "b (g i) (t j) d -> (b g t) (i j) d", i=lb1, j=lb2)

    cache: dict[tuple[int, ...], list[Tensor]] = {}

    def row_index(t1: int) -> list[Tensor]:
        """Per block offset (u, v) of the patch: flat index ``(T2, th·tw·O)`` into the
        tile's (query block × candidate block) matrix of every (query, window slot) pair,
        query skipped, slots row-major (the reference order)."""
        key = tuple(rows["host"]["local"][t1].tolist()) + tuple(
            rows["host"]["own"][t1].tolist())
        if key not in cache:
            o = torch.arange(window * window - 1, device=dev)
            own = (rows["own"][t1][None, :, None] * window + cols["own"][:, None, :])
            slot = o + (o >= own[..., None]).long()  # (T2, th, tw, O)
            ra = rows["local"][t1][None, :, None, None] + slot // window
            cb = cols["local"][:, None, :, None] + slot % window
            i = torch.arange(th, device=dev)[None, :, None, None]
            j = torch.arange(tw, device=dev)[None, None, :, None]
            cache[key] = [
                rearrange(((i + u) * bw + (j + v)) * (lb1 * lb2) + (ra + u) * lb2 + (cb + v),
                          "t i j o -> t (i j o)")
                for u in range(pb) for v in range(pb)
            ]
        return cache[key]

    def pair_index(g0: int, g1: int) -> list[Tensor]:
        """:func:`row_index` of the group's tile rows, repeated over the batch."""
        per_t1 = [row_index(t1) for t1 in range(g0, g1)]
        return [torch.cat([r[uv] for r in per_t1]).repeat(b, 1) for uv in range(pb * pb)]

    dists = []
    for g0, g1 in groups:
        q = query_blocks(g0, g1)
        cand = cand_blocks(eb, g0, g1)
        block_dist = torch.baddbmm(
            q.pow(2).sum(-1, keepdim=True) + cand.pow(2).sum(-1)[:, None, :],
            q, cand.transpose(1, 2), alpha=-2.0,
        ).view(q.shape[0], -1)
        d = sum(block_dist.gather(1, idx) for idx in pair_index(g0, g1))
        d = rearrange(d, "(b g t) (i j o) -> b (g i) (t j) o", b=b, t=t2n, i=th, j=tw)
        dists.append(d[:, : min(g1 * th, n1) - g0 * th, :n2])
    dist = rearrange(torch.cat(dists, dim=1), "b i j o -> b (i j) o")
    weights = weights_fn(dist, temperature).view(b, n1, n2, k, -1)
    # Zero weights for the query positions past the grid's end: tiles become plain slices.
    weights = F.pad(weights, (0, 0, 0, 0, 0, t2n * tw - n2, 0, t1n * th - n1))

    out = y.new_zeros(b, k, t1n * th + ext, t2n * tw + ext, yb.shape[-1])
    for g0, g1 in groups:
        wt = rearrange(weights[:, g0 * th : g1 * th], "b (g i) (t j) k o -> (b g t) k (i j o)",
                       i=th, j=tw)
        per_block = wt.new_zeros(wt.shape[0], k, bh * bw * lb1 * lb2)
        for idx in pair_index(g0, g1):
            per_block.scatter_add_(2, idx[:, None, :].expand(-1, k, -1), wt)
        z = torch.bmm(per_block.view(wt.shape[0], k * bh * bw, lb1 * lb2),
                      cand_blocks(yb, g0, g1))
        z = rearrange(z, "(b g t) (k i j) d -> b k g i t j d", b=b, t=t2n, k=k, i=bh)
        # Overlap-add: tile (g, t) covers block rows g·th … + bh and columns t·tw … + bw.
        cols_added = z.new_zeros(b, k, g1 - g0, bh, t2n * tw + ext, z.shape[-1])
        cols_added[:, :, :, :, : t2n * tw] += rearrange(z[..., :tw, :],
                                                        "b k g i t j d -> b k g i (t j) d")
        for v in range(ext):
            cols_added[:, :, :, :, tw + v :: tw][:, :, :, :, :t2n] += z[..., tw + v, :]
        strip = out[:, :, g0 * th :]
        strip[:, :, : (g1 - g0) * th] += rearrange(cols_added[:, :, :, :th],
                                                   "b k g i j d -> b k (g i) j d")
        for u in range(ext):
            strip[:, :, th + u :: th][:, :, : g1 - g0] += cols_added[:, :, :, th + u]
    out = out[:, :, :m1, :m2]
    pt, _ = patch_padding(h, patch_size, stride)
    pl, _ = patch_padding(w, patch_size, stride)
    ones = torch.ones(1, 1, n1, n2, dtype=y.dtype, device=dev)
    count = F.conv_transpose2d(ones, torch.ones(1, 1, pb, pb, dtype=y.dtype, device=dev))
    out = out / count[0, 0, None, None, :, :, None]
    img = rearrange(out, "b k i j (c u v) -> b k c (i u) (j v)", u=s, v=s)
    return img[..., pt : pt + h, pl : pl + w]
