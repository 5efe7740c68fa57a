"""n3seq_image: the N³ image adapter (patches, windows, N3Block2d, DnCNN, N3Net)."""

from n3seq_image.block2d import N3Block2d, n3_aggregate_2d, n3_output_2d
from n3seq_image.dncnn import DnCNN
from n3seq_image.memory_format import preferred_memory_format
from n3seq_image.n3net import N3Net
from n3seq_image.patches import (
    ExtractPatches,
    FoldPatches,
    extract_patches,
    fold_patches,
    patch_grid,
    patch_padding,
)
from n3seq_image.windows import window_candidates_2d

__all__ = [
    "DnCNN",
    "ExtractPatches",
    "FoldPatches",
    "N3Block2d",
    "N3Net",
    "extract_patches",
    "fold_patches",
    "n3_aggregate_2d",
    "n3_output_2d",
    "patch_grid",
    "patch_padding",
    "preferred_memory_format",
    "window_candidates_2d",
]
