import pytest
import torch

from n3seq import window_candidates
from n3seq.timeseries import padded_window_candidates


def test_equals_core_windows_for_full_series():
    cand = padded_window_candidates(torch.tensor([12, 12]), 12, 2)
    assert cand.shape == (2, 12, 5)
    torch.testing.assert_close(cand, window_candidates(12, 2).expand(2, -1, -1))


def test_windows_stay_inside_each_series():
    lengths = torch.tensor([12, 7, 5])
    cand = padded_window_candidates(lengths, 12, 2)
    for row, length in zip(cand, lengths.tolist()):
        assert int(row.max()) < length
        torch.testing.assert_close(row[:length], window_candidates(length, 2)[0])


def test_errors():
    with pytest.raises(ValueError, match=r"2\*radius\+1=5 .* lengths \[12, 4\]"):
        padded_window_candidates(torch.tensor([12, 4]), 12, 2)
    with pytest.raises(ValueError, match="radius must be an int >= 1"):
        padded_window_candidates(torch.tensor([12]), 12, 0)
    with pytest.raises(ValueError, match=r"lengths must be a tensor of shape \(B,\)"):
        padded_window_candidates(torch.tensor([[12]]), 12, 1)
