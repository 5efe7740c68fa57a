"""N³ for time series: overlapping windows as tokens, denoising, imputation and forecasting.

Import explicitly (``import n3seq.timeseries``); the core package does not load adapters.

Example:
    >>> from n3seq.timeseries import SeriesModel
    >>> model = SeriesModel(channels=1, window=8, stride=4, width=16)
"""

from n3seq.ablation import count_parameters, matching_width
from n3seq.timeseries import model as _model
from n3seq.timeseries.baselines import (
    linear_interpolation,
    moving_average,
    savitzky_golay,
    seasonal_naive,
)
from n3seq.timeseries.data import (
    SeriesSplit,
    load_co2,
    load_split,
    load_sunspots,
    load_taylor,
    split_in_time,
)
from n3seq.timeseries.forecast import forecast
from n3seq.timeseries.metrics import masked_mae, masked_mse
from n3seq.timeseries.model import (
    DenseStage,
    SeriesModel,
    SeriesN3Stage,
    SeriesNet,
    TokenConvStage,
)
from n3seq.timeseries.peers import (
    HoltWinters,
    Peer,
    SavitzkyGolayPeer,
    SeasonalLevelPeer,
    SeasonalNaivePeer,
    StateSpacePeer,
    STLPeer,
    TBATSPeer,
    peer_predict,
    select_by_aic,
    select_state_space,
)
from n3seq.timeseries.tasks import TASKS, forecast_mask, gap_mask, make_episode, random_crops
from n3seq.timeseries.train import fit_on_episodes, fit_series_model, pinball_loss
from n3seq.timeseries.windows import (
    WindowTokens,
    check_padding_mask,
    covered_length,
    fold_windows,
    num_windows,
    unfold_windows,
    window_mask,
)

__all__ = [
    "TASKS",
    "DenseStage",
    "HoltWinters",
    "Peer",
    "STLPeer",
    "SavitzkyGolayPeer",
    "SeasonalLevelPeer",
    "SeasonalNaivePeer",
    "SeriesModel",
    "SeriesN3Stage",
    "SeriesNet",
    "SeriesSplit",
    "StateSpacePeer",
    "TBATSPeer",
    "TokenConvStage",
    "WindowTokens",
    "check_padding_mask",
    "count_parameters",
    "covered_length",
    "fit_on_episodes",
    "fit_series_model",
    "fold_windows",
    "forecast",
    "forecast_mask",
    "gap_mask",
    "linear_interpolation",
    "load_co2",
    "load_split",
    "load_sunspots",
    "load_taylor",
    "make_episode",
    "masked_mae",
    "masked_mse",
    "matching_width",
    "moving_average",
    "num_windows",
    "peer_predict",
    "pinball_loss",
    "random_crops",
    "savitzky_golay",
    "seasonal_naive",
    "select_by_aic",
    "select_state_space",
    "split_in_time",
    "unfold_windows",
    "window_mask",
]


def __getattr__(name: str) -> object:
    """Old names, kept for a while with a DeprecationWarning (see :mod:`.model`)."""
    if name == "LocalStage":
        return _model.LocalStage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
