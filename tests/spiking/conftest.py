"""Shared fixtures for the spiking tests: a two-class toy image set in the training npz layout."""

from __future__ import annotations

import numpy as np
import pytest


def write_toy_npz(path, n_train: int, n_test: int = 8, seed: int = 0):
    """Write 16 x 16 RGB images whose class (0 or 1) is a bright left or right half, in the
    ``train_images / train_labels / test_images / test_labels`` layout ``train_snn`` reads."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = np.arange(n) % 2
        x = rng.integers(0, 60, size=(n, 16, 16, 3)).astype(np.uint8)
        x[y == 0, :, :8] += 150
        x[y == 1, :, 8:] += 150
        return x, y

    (trx, try_), (tex, tey) = make(n_train), make(n_test)
    np.savez(path, train_images=trx, train_labels=try_, test_images=tex, test_labels=tey)
    return path


@pytest.fixture
def toy_npz(tmp_path):
    """A factory: ``toy_npz(n_train)`` writes the toy set under ``tmp_path`` and returns its path."""
    return lambda n_train: write_toy_npz(tmp_path / "toy.npz", n_train)
