"""Shared fixtures of the SAE tests: single-threaded torch (tiny matmuls on a shared machine are
many times faster on one thread)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
