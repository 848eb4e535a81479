"""Random responses (no signal) to the bundled 92 images, with 2 repetitions, as an npz target."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexalign.stimuli import load_stimuli


def write_random_responses(folder: Path, n_neuroids: int, seed: int = 0) -> str:
    """``folder/planted.npz``: responses (92, n_neuroids, 2) ~ N(0, 1) and the stimulus ids."""
    ids = load_stimuli("kriegeskorte92").ids
    rng = np.random.default_rng(seed)
    path = folder / "planted.npz"
    np.savez(path, responses=rng.normal(size=(len(ids), n_neuroids, 2)), stimulus_ids=np.array(ids))
    return str(path)
