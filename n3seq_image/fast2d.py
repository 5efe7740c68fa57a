"""The fast backend of :func:`~n3seq_image.block2d.n3_aggregate_2d`: tiles of query patches.

The queries of a ``tile × tile`` block of patch positions share one rectangle of candidate
patches, the union of their search windows (at most ``tile + window − 1`` positions per
side). For each tile, all query–candidate distances are one matrix product
(``‖q‖² + ‖c‖² − 2 q·c``, on embeddings centred per channel so that the expansion does not
cancel), the window's ``window² − 1`` scores per query are picked from it in exactly the
order of the reference backend, and, after the relaxation, the k weight vectors are scattered
back into a dense tile matrix whose product with the candidate patches gives the neighbour
patches. Tiles are processed one row at a time and folded into the output strip by strip, so
memory stays a few times the feature map, and no per-query candidate patches are gathered.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from n3seq_image.patches import extract_patches, patch_grid, patch_padding
from n3seq_image.windows import window_starts

#: Side of a tile of query patches.
TILE = 8


def _tile_layout(n: int, window: int, tile: int, device: torch.device) -> tuple[Tensor, ...]:
    """Per axis: query positions of each tile ``(T, tile)`` (clamped, so the last tile repeats
    its final position), the union's first candidate ``(T,)``, and the union-local index of
    each query's window slots ``(T, tile, window)``."""
    span = min(tile + window - 1, n)
    count = -(-n // tile)
    queries = (torch.arange(count, device=device)[:, None] * tile
               + torch.arange(tile, device=device)).clamp(max=n - 1)
    starts = window_starts(n, window, device)
    first = starts[queries[:, 0]].clamp(max=n - span)
    local = starts[queries][..., None] + torch.arange(window, device=device) - first[:, None, None]
    return queries, first, local, torch.tensor(span)


def aggregate_tiled(
    y: Tensor, embedding: Tensor, temperature: Tensor, k: int, patch_size: int, stride: int,
    window: int, weights_fn: Callable[[Tensor, Tensor], Tensor], tile: int = TILE,
) -> Tensor:
    """Same contract as the reference backend: ``(B, k, C, H, W)`` neighbour images."""
    b, c, h, w = y.shape
    n1, n2 = patch_grid((h, w), patch_size, stride)
    dev = y.device
    # Distances are translation invariant: centring the (padded) patches per channel keeps
    # ‖q‖² + ‖c‖² − 2 q·c from cancelling when the embedding has a large offset.
    e = embedding.shape[1]
    centre = embedding.detach().mean(dim=(2, 3))
    ep = extract_patches(embedding, patch_size, stride)
    ep = ep - centre.repeat_interleave(patch_size * patch_size, dim=1)[:, None, :]
    ep = ep.view(b, n1, n2, e * patch_size**2)
    yp = extract_patches(y, patch_size, stride).view(b, n1, n2, -1)
    sq = ep.pow(2).sum(-1)

    qi, r0, loc_r, span1 = _tile_layout(n1, window, tile, dev)
    qj, c0, loc_c, span2 = _tile_layout(n2, window, tile, dev)
    l1, l2 = int(span1), int(span2)
    t2 = qj.shape[0]
    # Union-local index of every window slot, self excluded (reference order): (T2, th, tw, O)
    # for tile row t1 is built from loc_r[t1] and loc_c.
    own_r = (qi - window_starts(n1, window, dev)[qi])  # (T1, tile): query's row in its window
    own_c = (qj - window_starts(n2, window, dev)[qj])  # (T2, tile)
    slots = torch.arange(window * window, device=dev)
    cand_rows = torch.arange(l1, device=dev)
    cand_cols = c0[:, None] + torch.arange(l2, device=dev)  # (T2, l2)

    def slot_index(t1: int) -> Tensor:
        full = loc_r[t1][None, :, None, :, None] * l2 + loc_c[:, None, :, None, :]
        full = full.reshape(t2, tile, tile, window * window)
        own = (own_r[t1][None, :, None] * window + own_c[:, None, :])[..., None]
        keep = slots != own
        return full[keep.expand_as(full)].view(t2, tile * tile, window * window - 1)

    def tile_rows(t1: int) -> tuple[Tensor, Tensor]:
        rows = qi[t1]
        q_rows = rows[None, :, None]
        q_cols = qj[:, None, :]
        c_rows = (r0[t1] + cand_rows)[None, :, None]
        c_cols = cand_cols[:, None, :]
        return (q_rows, q_cols), (c_rows, c_cols)

    num_rows = [min(tile, n1 - t * tile) for t in range(qi.shape[0])]

    dists = []
    for t1 in range(qi.shape[0]):
        (qr, qc), (cr, cc) = tile_rows(t1)
        q = rearrange(ep[:, qr, qc], "b t i j d -> (b t) (i j) d")
        cand = rearrange(ep[:, cr, cc], "b t i j d -> (b t) (i j) d")
        sq_q = rearrange(sq[:, qr, qc], "b t i j -> (b t) (i j) 1")
        sq_c = rearrange(sq[:, cr, cc], "b t i j -> (b t) 1 (i j)")
        dense = torch.baddbmm(sq_q + sq_c, q, cand.transpose(1, 2), alpha=-2.0)
        idx = slot_index(t1).repeat(b, 1, 1)
        d = rearrange(dense.gather(2, idx), "(b t) (i j) o -> b i (t j) o", b=b, i=tile)
        dists.append(d[:, : num_rows[t1], :n2])
    dist = rearrange(torch.cat(dists, dim=1), "b i j o -> b (i j) o")
    weights = weights_fn(dist, temperature).view(b, n1, n2, k, -1)

    pt, pb = patch_padding(h, patch_size, stride)
    pl, pr = patch_padding(w, patch_size, stride)
    hp, wp = h + pt + pb, w + pl + pr
    out = y.new_zeros(b * k, c, hp, wp)
    for t1 in range(qi.shape[0]):
        (qr, qc), (cr, cc) = tile_rows(t1)
        wt = rearrange(weights[:, qr, qc], "b t i j k o -> (b t) (i j) k o")
        idx = slot_index(t1).repeat(b, 1, 1)[:, :, None, :].expand(-1, -1, k, -1)
        dense = wt.new_zeros(wt.shape[0], tile * tile, k, l1 * l2).scatter(3, idx, wt)
        cand = rearrange(yp[:, cr, cc], "b t i j d -> (b t) (i j) d")
        z = torch.bmm(dense.view(wt.shape[0], -1, l1 * l2), cand)
        z = rearrange(z, "(b t) (i j k) d -> (b k) d i (t j)", b=b, i=tile, k=k)
        rows = num_rows[t1]
        z = z[..., :rows, :n2].reshape(b * k, -1, rows * n2)
        strip_h = patch_size + stride * (rows - 1)
        top = t1 * tile * stride
        strip = F.fold(z, (strip_h, wp), patch_size, stride=stride)
        out[:, :, top : top + strip_h] += strip
    ones = torch.ones(1, patch_size * patch_size, n1 * n2, dtype=y.dtype, device=dev)
    count = F.fold(ones, (hp, wp), patch_size, stride=stride)
    out = (out / count)[..., pt : pt + h, pl : pl + w]
    return rearrange(out, "(b k) c h w -> b k c h w", b=b)
