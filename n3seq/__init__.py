"""n3seq: Neural Nearest Neighbors (N³) blocks for any ``(batch, tokens, dims)`` tensor."""

from n3seq.aggregate import CHUNK_ELEMENTS, KNNAggregate, knn_aggregate, window_candidates
from n3seq.block import N3Block, n3_output
from n3seq.relaxation import ContinuousKNN, continuous_knn, hard_knn

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
