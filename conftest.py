"""Names the docstring examples of n3seq and n3seq_image may use without importing them."""

import numpy
import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict) -> None:
    doctest_namespace.update(torch=torch, np=numpy)
