"""N³ for unordered sets: inlier classification of putative 2-D point correspondences.

Import explicitly (``import n3seq.sets``); the core package does not load adapters.

Example:
    >>> from n3seq.sets import CorrespondenceNet, make_correspondences
    >>> batch = make_correspondences(2, min_points=50, max_points=80)
    >>> CorrespondenceNet(width=32, k=4)(batch["x"], batch["mask"]).shape
    torch.Size([2, 80])
"""

from n3seq.ablation import count_parameters, matching_width
from n3seq.sets.context_norm import ContextNorm, context_norm
from n3seq.sets.data import (
    apply_homography,
    homography_from_points,
    make_correspondences,
    random_homography,
)
from n3seq.sets.metrics import average_precision, mean_average_precision, precision_recall_f1
from n3seq.sets.model import (
    ContextNormBlock,
    CorrespondenceNet,
    SetDenseStage,
    SetN3Stage,
)
from n3seq.sets.train import fit_correspondence_net, inlier_loss

__all__ = [
    "ContextNorm",
    "ContextNormBlock",
    "CorrespondenceNet",
    "SetDenseStage",
    "SetN3Stage",
    "apply_homography",
    "average_precision",
    "context_norm",
    "count_parameters",
    "fit_correspondence_net",
    "homography_from_points",
    "inlier_loss",
    "make_correspondences",
    "matching_width",
    "mean_average_precision",
    "precision_recall_f1",
    "random_homography",
]
