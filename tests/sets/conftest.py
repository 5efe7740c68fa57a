import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one thread (see ``one_thread`` in tests/conftest.py)."""
