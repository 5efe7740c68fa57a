"""n3seq: Neural Nearest Neighbors (N³) blocks for any ``(batch, tokens, dims)`` tensor."""

# Names are imported on first use (PEP 562), so that importing a submodule, e.g. a command
# line's argument parser, does not import torch: ``--help`` stays instant.
from typing import TYPE_CHECKING

from n3seq._lazy import lazy_exports

if TYPE_CHECKING:
    from n3seq.aggregate import CHUNK_ELEMENTS, KNNAggregate, knn_aggregate, window_candidates
    from n3seq.block import N3Block, n3_output
    from n3seq.relaxation import ContinuousKNN, continuous_knn, hard_knn

_LAZY = {
    "CHUNK_ELEMENTS": "n3seq.aggregate",
    "KNNAggregate": "n3seq.aggregate",
    "knn_aggregate": "n3seq.aggregate",
    "window_candidates": "n3seq.aggregate",
    "N3Block": "n3seq.block",
    "n3_output": "n3seq.block",
    "ContinuousKNN": "n3seq.relaxation",
    "continuous_knn": "n3seq.relaxation",
    "hard_knn": "n3seq.relaxation",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__version__ = "0.1.0"

__all__ = [
    "CHUNK_ELEMENTS",
    "ContinuousKNN",
    "KNNAggregate",
    "N3Block",
    "__version__",
    "continuous_knn",
    "hard_knn",
    "knn_aggregate",
    "n3_output",
    "window_candidates",
]
