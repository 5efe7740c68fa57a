import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def one_thread():
    """Runs a test on one intra-op thread, then restores the setting.

    For tests whose tensors are tiny: a second OpenMP thread saves nothing, and on a loaded
    machine every parallel region waits for a descheduled thread (a 4 s training test took
    160 s with two threads at load 14). ``tests/sets`` and ``tests/timeseries`` use it for all
    their tests.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "n3seq", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "n3seq"))
