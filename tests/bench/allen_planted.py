"""An offline Allen-layout dataset whose neurons respond to where a tiny SAM's attention falls.

Four two-photon experiments (VISp and VISal x Cux2 and Sst) over the same natural-scenes
template. Cux2 cells respond to ``<image - mean image, centred mean attention map>`` of block
``PLANTED_BLOCK`` of the tiny SAM ViT-B below (on its 8 x 8 token grid), plus trial noise; Sst
cells get the same responses shuffled across images (the control). The images share a base
pattern plus per-image noise, so the model's maps are consistent across images (as attention on
natural scenes is) and the planted neurons' maps follow the model's maps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "neural"))
from allen_nwb_files import CUX2, SST, _ophys_file  # noqa: E402

SAM_TINY = {"name": "sam_vit_b", "untrained": True, "kwargs": {"tiny": True, "img_size": 128}}
PLANTED_BLOCK = "blocks.3.attn"
N_IMAGES, SIDE, REPS, N_CELLS = 24, 64, 4, 5
GROUPS = {("VISp", "Cux2"): True, ("VISp", "Sst"): False,
          ("VISal", "Cux2"): True, ("VISal", "Sst"): False}


def planted_images(seed: int = 0) -> np.ndarray:
    """(s, 64, 64) uint8: a shared base pattern plus per-image noise."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(SIDE, SIDE))
    noise = 0.3 * rng.normal(size=(N_IMAGES, SIDE, SIDE))
    return np.clip(128 + 40 * (base + noise), 0, 255).astype(np.uint8)


def planted_drive(images: np.ndarray) -> np.ndarray:
    """(s,) the planted drive: each image (on the token grid, mean image removed) projected on
    the centred mean attention map of ``PLANTED_BLOCK``, z-scored."""
    from cortexalign.models import load_model
    from cortexalign.models.attention import attention_maps
    from cortexalign.neural import stimuli_on_grid

    model = load_model(SAM_TINY["name"], untrained=True, **SAM_TINY["kwargs"])
    x = model.preprocess([np.repeat(im[..., None], 3, -1) for im in images])
    maps_sgg = attention_maps(model.module, x, blocks=[PLANTED_BLOCK])[PLANTED_BLOCK].numpy()
    mean_map = maps_sgg.mean(0) - maps_sgg.mean()
    grid = stimuli_on_grid(images, maps_sgg.shape[1:])
    drive = ((grid - grid.mean(0)) * mean_map).sum((1, 2))
    return (drive - drive.mean()) / drive.std()


def write_planted(folder: Path, seed: int = 0, noise: float = 0.3) -> Path:
    """Write the four experiment files into ``folder/ophys_experiment_data`` (an AllenSDK cache
    layout) and return ``folder``."""
    images = planted_images(seed)
    drive = planted_drive(images)
    rng = np.random.default_rng(seed + 1)
    root = folder / "ophys_experiment_data"
    root.mkdir(parents=True, exist_ok=True)
    frames = rng.permutation(np.concatenate([np.repeat(np.arange(N_IMAGES), REPS), [-1, -1]]))
    for k, ((area, cre), planted) in enumerate(GROUPS.items()):
        meta = dict(CUX2 if cre == "Cux2" else SST, location=area, session=f"50{k}",
                    container=f"51{k}", specimen=f"mouse-{k}")
        resp = drive if planted else rng.permutation(drive)
        gain = rng.uniform(0.5, 1.5, N_CELLS)
        amp_nt = 1.0 + gain[:, None] * np.where(frames >= 0, resp[frames], 0.0)[None]
        amp_nt = amp_nt + noise * rng.normal(size=amp_nt.shape)
        _ophys_file(root / f"{500 + k}.nwb", frames, amp_nt,
                    np.arange(1000 * (k + 1), 1000 * (k + 1) + N_CELLS), np.zeros(N_CELLS),
                    images, meta)
    return folder
