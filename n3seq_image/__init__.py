"""n3seq_image: the N³ image adapter (patches, windows, N3Block2d, DnCNN, N3Net, VDSR)."""

# Names are imported on first use (PEP 562), so that importing a submodule, e.g. a command
# line's argument parser, does not import torch: ``--help`` stays instant.
from typing import TYPE_CHECKING

from n3seq._lazy import lazy_exports

if TYPE_CHECKING:
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
    from n3seq_image.vdsr import VDSR
    from n3seq_image.windows import window_candidates_2d

_LAZY = {
    "N3Block2d": "n3seq_image.block2d",
    "n3_aggregate_2d": "n3seq_image.block2d",
    "n3_output_2d": "n3seq_image.block2d",
    "DnCNN": "n3seq_image.dncnn",
    "preferred_memory_format": "n3seq_image.memory_format",
    "N3Net": "n3seq_image.n3net",
    "VDSR": "n3seq_image.vdsr",
    "ExtractPatches": "n3seq_image.patches",
    "FoldPatches": "n3seq_image.patches",
    "extract_patches": "n3seq_image.patches",
    "fold_patches": "n3seq_image.patches",
    "patch_grid": "n3seq_image.patches",
    "patch_padding": "n3seq_image.patches",
    "window_candidates_2d": "n3seq_image.windows",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = [
    "VDSR",
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
