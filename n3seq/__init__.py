"""n3seq: Neural Nearest Neighbors (N³) blocks for any ``(batch, tokens, dims)`` tensor."""

# Names are imported on first use (PEP 562), so that importing a submodule, e.g. a command
# line's argument parser, does not import torch: ``--help`` stays instant.
from typing import TYPE_CHECKING

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


def __getattr__(name: str) -> object:
    import importlib
    import importlib.util

    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f"{__name__}.{name}")  # a submodule, as before
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
