"""Shared fixtures: the shared data folder (skips cleanly when absent) and small random data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is absent (it ships beside the repo "
                    "on the project's machines, not in a clone)")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per test: pytest-xdist runs one worker per core, and tiny tensors
    on extra threads only contend (several-fold slower on the 2-core CI machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
