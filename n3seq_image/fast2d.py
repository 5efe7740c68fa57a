"""The fast backend of :func:`~n3seq_image.block2d.n3_aggregate_2d`: tiles of query patches.

Two stages around the core relaxation, called in sequence by the block:
:func:`tiled_distances` (patch distances inside the search windows) → the relaxation
(:func:`n3seq.relaxation.relax_scores`) → :func:`tiled_fold` (weighted candidate patches folded
back into images); :func:`tile_layout` is the tiling both stages share.

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


def can_run_fast(patch_size: int, stride: int) -> bool:
    """Whether the ``"fast"`` backend can run: it needs the stride to divide the patch size."""
    return patch_size % stride == 0


class TileLayout:
    """How the queries of a ``(B, ·, H, W)`` map split into tiles, shared by the two stages.

    Built once per call by :func:`tile_layout`; :func:`tiled_distances` and :func:`tiled_fold`
    read it (and share its cache of pair indices).
    """

    def __init__(self, batch: int, size: tuple[int, int], k: int, patch_size: int, stride: int,
                 window: int, device: torch.device, tile: int = TILE) -> None:
        h, w = size
        self.batch, self.size, self.k = batch, size, k
        self.patch_size, self.stride, self.window = patch_size, stride, window
        self.device = device
        self.pb = pb = patch_size // stride
        self.n1, self.n2 = n1, n2 = patch_grid((h, w), patch_size, stride)
        # A small axis is one tile: its union of windows is the whole axis anyway.
        self.th = th = n1 if n1 <= tile + window - 1 else tile
        self.tw = tw = n2 if n2 <= tile + window - 1 else tile
        self.rows = _axis_layout(n1, window, th, device)
        self.cols = _axis_layout(n2, window, tw, device)
        self.l1, self.l2 = self.rows["span"], self.cols["span"]
        self.t1n, self.t2n = self.rows["queries"].shape[0], self.cols["queries"].shape[0]
        self.ext = ext = pb - 1
        # Block extents of a query tile (th + ext, tw + ext) and of its union (lb1, lb2).
        self.bh, self.bw = th + ext, tw + ext
        self.lb1, self.lb2 = self.l1 + ext, self.l2 + ext
        self.c_bcols = (self.cols["first"][:, None]
                        + torch.arange(self.lb2, device=device)).flatten()
        # Tile rows are processed in groups whose aggregation matrices stay ~16 MiB: few,
        # large operations (under autograd and on busy CPUs many small ones cost more than
        # their work).
        per_row = batch * self.t2n * k * self.bh * self.bw * self.lb1 * self.lb2
        group = max(1, min(self.t1n, GROUP_ELEMENTS // per_row))
        self.groups = [(g0, min(g0 + group, self.t1n)) for g0 in range(0, self.t1n, group)]
        self._cache: dict[tuple[int, ...], list[Tensor]] = {}

    def blocks(self, x: Tensor) -> Tensor:
        """Block vectors ``(B, i, j, C·s·s)`` of the padded map ``x``."""
        s = self.stride
        return rearrange(pad_for_patches(x, self.patch_size, s),
                         "b c (i u) (j v) -> b i j (c u v)", u=s, v=s)

    def cand_blocks(self, src: Tensor, g0: int, g1: int) -> Tensor:
        """The blocks of the candidate rectangles of tile rows ``g0 … g1 − 1``."""
        lb1, lb2 = self.lb1, self.lb2
        brows = (self.rows["first"][g0:g1, None]
                 + torch.arange(lb1, device=self.device)).flatten()
        x = src.index_select(1, brows).index_select(2, self.c_bcols)
        return rearrange(x, "b (g i) (t j) d -> (b g t) (i j) d", i=lb1, j=lb2)

    def row_index(self, t1: int) -> list[Tensor]:
        """Per block offset (u, v) of the patch: flat index ``(T2, th·tw·O)`` into the
        tile's (query block × candidate block) matrix of every (query, window slot) pair,
        query skipped, slots row-major (the reference order)."""
        rows, cols, window, dev = self.rows, self.cols, self.window, self.device
        key = tuple(rows["host"]["local"][t1].tolist()) + tuple(
            rows["host"]["own"][t1].tolist())
        if key not in self._cache:
            th, tw, bw, lb1, lb2 = self.th, self.tw, self.bw, self.lb1, self.lb2
            o = torch.arange(window * window - 1, device=dev)
            own = (rows["own"][t1][None, :, None] * window + cols["own"][:, None, :])
            slot = o + (o >= own[..., None]).long()  # (T2, th, tw, O)
            ra = rows["local"][t1][None, :, None, None] + slot // window
            cb = cols["local"][:, None, :, None] + slot % window
            i = torch.arange(th, device=dev)[None, :, None, None]
            j = torch.arange(tw, device=dev)[None, None, :, None]
            self._cache[key] = [
                rearrange(((i + u) * bw + (j + v)) * (lb1 * lb2) + (ra + u) * lb2 + (cb + v),
                          "t i j o -> t (i j o)")
                for u in range(self.pb) for v in range(self.pb)
            ]
        return self._cache[key]

    def pair_index(self, g0: int, g1: int) -> list[Tensor]:
        """:meth:`row_index` of the group's tile rows, repeated over the batch."""
        per_t1 = [self.row_index(t1) for t1 in range(g0, g1)]
        return [torch.cat([r[uv] for r in per_t1]).repeat(self.batch, 1)
                for uv in range(self.pb * self.pb)]


def tile_layout(
    y: Tensor, k: int, patch_size: int, stride: int, window: int, tile: int = TILE
) -> TileLayout:
    """The tiling of ``y``'s patch grid for :func:`tiled_distances` and :func:`tiled_fold`."""
    return TileLayout(y.shape[0], (y.shape[2], y.shape[3]), k, patch_size, stride, window,
                      y.device, tile)


def tiled_distances(embedding: Tensor, layout: TileLayout) -> Tensor:
    """Squared distances ``(B, N, window² − 1)`` of every patch to its window's candidates.

    In the order of :func:`~n3seq_image.windows.window_candidates_2d` (query skipped), so
    that the scores, their batch-norm and the relaxation are those of the reference path.
    """
    lay = layout
    b, th, tw, ext, n1, n2 = lay.batch, lay.th, lay.tw, lay.ext, lay.n1, lay.n2
    # Block vectors of the padded embedding, centred (distances do not change; the expanded
    # square does not cancel), the block grid padded at the end so that every tile of queries
    # (tile + ext blocks per side) is a plain slice.
    e = pad_for_patches(embedding, lay.patch_size, lay.stride)
    e = e - embedding.detach().mean(dim=(2, 3), keepdim=True)
    s = lay.stride
    eb = rearrange(e, "b c (i u) (j v) -> b i j (c u v)", u=s, v=s)
    m1, m2 = eb.shape[1:3]
    eb_q = F.pad(eb, (0, 0, 0, lay.t2n * tw + ext - m2, 0, lay.t1n * th + ext - m1))
    dists = []
    for g0, g1 in lay.groups:
        x = eb_q[:, g0 * th : g1 * th + ext].unfold(1, lay.bh, th).unfold(2, lay.bw, tw)
        q = rearrange(x, "b g t d i j -> (b g t) (i j) d")
        cand = lay.cand_blocks(eb, g0, g1)
        block_dist = torch.baddbmm(
            q.pow(2).sum(-1, keepdim=True) + cand.pow(2).sum(-1)[:, None, :],
            q, cand.transpose(1, 2), alpha=-2.0,
        ).view(q.shape[0], -1)
        d = sum(block_dist.gather(1, idx) for idx in lay.pair_index(g0, g1))
        d = rearrange(d, "(b g t) (i j o) -> b (g i) (t j) o", b=b, t=lay.t2n, i=th, j=tw)
        dists.append(d[:, : min(g1 * th, n1) - g0 * th, :n2])
    return rearrange(torch.cat(dists, dim=1), "b i j o -> b (i j) o")


def tiled_fold(y: Tensor, weights: Tensor, layout: TileLayout) -> Tensor:
    """The k neighbour images ``(B, k, C, H, W)``: ``weights`` ``(B, N, k, window² − 1)``
    applied to ``y``'s candidate patches and folded back (averaged over overlapping patches).
    """
    lay = layout
    b, k, th, tw, ext = lay.batch, lay.k, lay.th, lay.tw, lay.ext
    t1n, t2n, n1, n2, bh, bw = lay.t1n, lay.t2n, lay.n1, lay.n2, lay.bh, lay.bw
    yb = lay.blocks(y)
    m1, m2 = yb.shape[1:3]
    weights = weights.view(b, n1, n2, k, -1)
    # Zero weights for the query positions past the grid's end: tiles become plain slices.
    weights = F.pad(weights, (0, 0, 0, 0, 0, t2n * tw - n2, 0, t1n * th - n1))
    out = y.new_zeros(b, k, t1n * th + ext, t2n * tw + ext, yb.shape[-1])
    for g0, g1 in lay.groups:
        wt = rearrange(weights[:, g0 * th : g1 * th], "b (g i) (t j) k o -> (b g t) k (i j o)",
                       i=th, j=tw)
        per_block = wt.new_zeros(wt.shape[0], k, bh * bw * lay.lb1 * lay.lb2)
        for idx in lay.pair_index(g0, g1):
            per_block.scatter_add_(2, idx[:, None, :].expand(-1, k, -1), wt)
        z = torch.bmm(per_block.view(wt.shape[0], k * bh * bw, lay.lb1 * lay.lb2),
                      lay.cand_blocks(yb, g0, g1))
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
    h, w = lay.size
    s, pb = lay.stride, lay.pb
    pt, _ = patch_padding(h, lay.patch_size, s)
    pl, _ = patch_padding(w, lay.patch_size, s)
    ones = torch.ones(1, 1, n1, n2, dtype=y.dtype, device=y.device)
    count = F.conv_transpose2d(ones, torch.ones(1, 1, pb, pb, dtype=y.dtype, device=y.device))
    out = out / count[0, 0, None, None, :, :, None]
    img = rearrange(out, "b k i j (c u v) -> b k c (i u) (j v)", u=s, v=s)
    return img[..., pt : pt + h, pl : pl + w]
