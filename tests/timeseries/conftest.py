import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Runs these tests on one intra-op thread, then restores the setting.

    Their tensors are tiny: a second OpenMP thread saves nothing, and on a loaded machine every
    parallel region waits for a descheduled thread (a 4 s training test took 160 s with two
    threads at load 14).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
