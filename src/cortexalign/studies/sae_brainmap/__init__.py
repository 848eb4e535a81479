"""SAE-BrainMap as a study: a simulated NSD with planted voxels, and the whole analysis in one call.

``simulate(out, size)`` writes an NSD in NSD's layouts (``_nsd_layout``): stimuli, design, ROIs,
subject-space betas (func1pt8mm) with the subject's FreeSurfer surfaces aligned to them (so the
study draws its maps on them) and fsaverage betas, whose planted voxels (V1v: units of the
first layer; FFA-1: units of the last layer) are noisy copies of chosen SAE units of the study's
model. Those units come from running the study's own analysis once on the unplanted data (its
SAE training is seeded, so the study retrains the same dictionaries); ``planted.json`` records
each planted voxel's layer and unit, ``simulation.json`` the analysis settings.

``run(data, out, subset)`` runs SAE-BrainMap (``cortexalign.sae.runner.run_brainmap``: tokens,
SAEs, matching with permutation p-values, dictionary, ROI consistency, hierarchy, maps, store
and report) and, on simulated data, writes ``recovery.csv``: per planted voxel, whether its
dictionary entry is the planted unit and its best layer the planted layer.

Sizes: ``tiny`` (tests), ``cpu`` (minutes on 2 cores), ``full`` (NSD's real sizes: 81 x 104 x 83
voxels, 10,000 images of 425 px out of 73,000, 40 sessions, 163,842 vertices per hemisphere;
about 100 GB on disk, checked before anything is written; the ViT-B/16 analysis needs a GPU).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cortexalign.errors import InputError
from cortexalign.studies import StudyResult

__all__ = ["SIZES", "SimSize", "simulate", "run", "analysis_config"]


@dataclass(frozen=True)
class SimSize:
    """How big a simulated NSD is and which analysis it is made for."""

    grid: tuple[int, int, int]
    n_images: int
    n_73k: int
    side: int
    sessions: int
    roi_edge: int  # edge of each ROI's cube of voxels
    planted_per_roi: int
    vertices: int  # fsaverage vertices per hemisphere
    model_kwargs: dict
    layers: tuple[str, ...]
    sae: dict
    epochs: int


_TINY_VIT = {"untrained": True, "patch_size": 8, "num_heads": 2, "num_classes": 0}
SIZES = {
    "tiny": SimSize((8, 6, 5), 24, 30, 32, 1, 2, 3, 64,
                    dict(_TINY_VIT, img_size=32, embed_dim=32, depth=2), ("blocks.0", "blocks.1"),
                    {"architecture": "topk", "expansion": 2, "k": 4, "lr": 3e-3, "batch_size": 128},
                    10),
    "cpu": SimSize((20, 24, 20), 150, 200, 64, 1, 3, 6, 2000,
                   dict(_TINY_VIT, img_size=64, embed_dim=64, depth=4),
                   ("blocks.0", "blocks.1", "blocks.2", "blocks.3"),
                   {"architecture": "topk", "expansion": 4, "k": 8, "lr": 3e-3, "batch_size": 256},
                   8),
    "full": SimSize((81, 104, 83), 10000, 73000, 425, 40, 6, 50, 163842, {},
                    tuple(f"blocks.{i}" for i in range(12)),
                    {"architecture": "batch_topk", "expansion": 16, "k": 32, "lr": 5e-5,
                     "batch_size": 100352, "autocast_bf16": True}, 5),
}
PLANT_NOISE = 0.5  # trial noise sd, relative to the planted unit's sd
SIM_FILE, PLANT_FILE, RECOVERY_FILE = "simulation.json", "planted.json", "recovery.csv"


def _images(n_73k: int, side: int, seed: int):
    """Image i: two random oriented gratings plus noise (varied, natural-ish statistics)."""
    yy, xx = np.mgrid[0:side, 0:side] / side

    def image(i: int) -> np.ndarray:
        g = np.random.default_rng([seed, i])
        img = np.zeros((side, side, 3))
        for _ in range(2):
            f, th, ph = g.uniform(1, 6), g.uniform(0, np.pi), g.uniform(0, 2 * np.pi)
            wave = np.sin(2 * np.pi * f * (xx * np.cos(th) + yy * np.sin(th)) + ph)
            img += wave[..., None] * g.uniform(0.2, 1.0, 3)
        img += 0.3 * g.standard_normal((side, side, 3))
        return np.clip(128 + 50 * img, 0, 255).astype(np.uint8)

    return image


def _roi_volumes(size: SimSize) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, list]]:
    """V1v and FFA-1 cubes inside an nsdgeneral mask; the voxels (x, y, z) of each ROI."""
    grid, e = size.grid, size.roi_edge
    prf, faces = np.zeros(grid, np.int16), np.zeros(grid, np.int16)
    prf[:e, :e, :e] = 1  # V1v
    faces[-e:, -e:, -e:] = 2  # FFA-1
    general = np.zeros(grid, np.int16)
    general[: grid[0] // 2 + e, :, :] = 1
    general[-e:, -e:, -e:] = 1
    voxels = {"V1v": [tuple(int(v) for v in ijk) for ijk in np.argwhere(prf == 1)],
              "FFA-1": [tuple(int(v) for v in ijk) for ijk in np.argwhere(faces == 2)]}
    return {"prf-visualrois": prf, "floc-faces": faces}, general, voxels


def analysis_config(data: Path, sim: dict | None, subset: str | None) -> dict:
    """The BrainMapConfig (as a dict) for ``data``: a simulation's own settings, else the seed's."""
    data = Path(data)
    common = {"neural": {"root": str(data), "subject": 1,
                         "rois": ["prf-visualrois", "floc-faces"], "within": "nsdgeneral"},
              "stimuli": {"source": str(data / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5")},
              "name": "SAE-BrainMap study"}
    if sim is not None:
        size = SIZES[sim["size"]]
        model = "timm:vit_tiny_patch16_224" if size.model_kwargs else \
            "timm:vit_base_patch16_clip_quickgelu_224.openai"
        cfg = {"model": model, "model_kwargs": _weights(data, size.model_kwargs),
               "layers": list(size.layers), "sae": dict(size.sae), "epochs": size.epochs,
               "images_per_chunk": 16, "min_steps": 0,  # the sizes' own epochs
               "n_permutations": 19 if sim["size"] == "tiny" else 99,
               "top_units": 3, "n_images": 5, "selectivity_threshold": 2,
               "labels": str(data / "labels.csv"), **common}
        cfg["neural"]["sessions"] = list(range(1, size.sessions + 1))
        return cfg
    sessions = [1] if subset == "cpu" else list(range(1, 41))
    layers = ["blocks.0", "blocks.5", "blocks.11"] if subset == "cpu" else [
        f"blocks.{i}" for i in range(12)]
    cfg = {"model": "timm:vit_base_patch16_clip_quickgelu_224.openai",
           "model_kwargs": _weights(data, {}), "layers": layers,
           "sae": dict(SIZES["full"].sae), "epochs": 1 if subset == "cpu" else 5,
           "min_steps": 0 if subset == "cpu" else 2000, **common}
    cfg["neural"]["sessions"] = sessions
    cfg["neural"]["rois"] = ["prf-visualrois", "floc-faces", "floc-bodies", "floc-places",
                             "floc-words"]
    return cfg


def _weights(data: Path, kwargs: dict) -> dict:
    """OpenAI's released ViT-B-16.pt under DATA/weights, when present (else timm's hub)."""
    if kwargs:
        return dict(kwargs)
    path = data / "weights" / "ViT-B-16.pt"
    return {"weights": str(path)} if path.is_file() else {}


def _load_sim(data: Path) -> dict | None:
    path = Path(data) / SIM_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def simulate(out: str | Path, size: str = "cpu", seed: int = 0, progress: bool = True) -> Path:
    """Write a simulated NSD (see the module docstring) into ``out``; returns ``out``."""
    from cortexalign.neural.fmri import nsd_stimulus_id
    from cortexalign.sae.pipeline import BrainMapConfig
    from cortexalign.sae.runner import run_brainmap
    from cortexalign.studies.sae_brainmap import _nsd_layout as lay

    if size not in SIZES:
        raise InputError("size", " or ".join(map(repr, SIZES)), repr(size), "pass --size cpu")
    sz, root = SIZES[size], Path(out)
    if (root / SIM_FILE).is_file():
        raise InputError("out", "a new or empty directory", f"{str(root)!r}, which already holds "
                         "a simulation", "choose another --out or delete it")
    need = _bytes_needed(sz)
    free = shutil.disk_usage(_existing_parent(root)).free
    if need > free:
        raise InputError("out", f"a disk with {need / 1e9:.1f} GB free for --size {size}",
                         f"{free / 1e9:.1f} GB free under {str(root)!r}",
                         "free space, choose another --out, or use --size cpu")
    rng = np.random.default_rng(seed)
    seen = np.sort(rng.choice(sz.n_73k, sz.n_images, replace=False))
    lay.write_stimuli(root, _images(sz.n_73k, sz.side, seed), sz.n_73k, sz.side)
    nsd_id_t = lay.write_design(root, seen, sz.sessions)
    rois, general, roi_voxels = _roi_volumes(sz)
    lay.write_volume_rois(root, rois, general)
    lay.write_subject_surfaces(root, sz.grid, 4 if max(sz.grid) < 16 else 5 if max(sz.grid) < 64
                               else 6)
    ids = [nsd_stimulus_id(i) for i in dict.fromkeys(nsd_id_t.tolist())]
    (root / "labels.csv").write_text("stimulus_id,category\n" + "".join(
        f"{s},{'faces' if k % 2 else 'places'}\n" for k, s in enumerate(ids)))
    n_t = sz.sessions * lay.TRIALS
    for s in range(sz.sessions):
        lay.write_volume_betas(root, s + 1, rng.normal(0, 1000, (*sz.grid, lay.TRIALS)))
    # the study's own analysis on the unplanted data gives the units to plant
    sim = {"size": size, "seed": seed, **asdict(sz)}
    cfg = BrainMapConfig.model_validate({**analysis_config(root, sim, None), "n_permutations": 0,
                                         "labels": None, "one_to_one": False})
    scratch = root / ".units"
    units = run_brainmap(cfg, scratch, progress=progress).result.units
    shutil.rmtree(scratch, ignore_errors=True)
    order = [nsd_stimulus_id(i) for i in dict.fromkeys(nsd_id_t.tolist())]
    pos = {s: k for k, s in enumerate(order)}
    trial_rows = np.array([pos[nsd_stimulus_id(i)] for i in nsd_id_t])
    planted = _plant(units, sz, roi_voxels, rng)
    for s in range(sz.sessions):
        betas = rng.normal(0, 1000, (*sz.grid, lay.TRIALS))
        rows = trial_rows[s * lay.TRIALS:(s + 1) * lay.TRIALS]
        for p in planted:
            betas[tuple(p["voxel"])] = _planted_trials(units[p["layer"]][:, p["unit"]], rows, rng)
        lay.write_volume_betas(root, s + 1, betas)
    _write_surface(root, sz, units, planted, trial_rows, rng)
    (root / PLANT_FILE).write_text(json.dumps(planted, indent=1))
    (root / SIM_FILE).write_text(json.dumps({**sim, "trials": n_t}, indent=1))
    return root


def _bytes_needed(sz: SimSize) -> int:
    """Disk use of a simulation: stimuli, int16 subject-space and float32 fsaverage betas."""
    from cortexalign.studies.sae_brainmap._nsd_layout import TRIALS

    per_session = int(np.prod(sz.grid)) * TRIALS * 2 + 2 * sz.vertices * TRIALS * 4
    return sz.n_73k * sz.side ** 2 * 3 + (sz.sessions + 1) * per_session  # + one temporary file


def _existing_parent(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _plant(units: dict, sz: SimSize, roi_voxels: dict, rng) -> list[dict]:
    """Each ROI's first voxels copy distinct varying units: V1v the first layer, FFA-1 the last."""
    planted = []
    for roi, layer in (("V1v", sz.layers[0]), ("FFA-1", sz.layers[-1])):
        u = units[layer]
        varying = np.flatnonzero(u.std(0) > 1e-3 * max(float(u.std(0).max()), 1e-12))
        pick = rng.choice(varying, min(sz.planted_per_roi, len(varying)), replace=False)
        for vox, j in zip(roi_voxels[roi], pick, strict=False):
            planted.append({"voxel": list(vox), "roi": roi, "layer": layer, "unit": int(j),
                            "id": f"subj01_{vox[0]}_{vox[1]}_{vox[2]}"})
    return planted


def _planted_trials(unit_s: np.ndarray, rows: np.ndarray, rng) -> np.ndarray:
    v = (unit_s - unit_s.mean()) / max(float(unit_s.std()), 1e-12)
    return 3000 * (v[rows] + PLANT_NOISE * rng.standard_normal(len(rows)))


def _write_surface(root: Path, sz: SimSize, units: dict, planted: list[dict], trial_rows, rng):
    """fsaverage labels and betas: each hemisphere's first vertices copy the planted units."""
    from cortexalign.studies.sae_brainmap import _nsd_layout as lay

    n, e3 = sz.vertices, sz.roi_edge ** 3
    labels = {}
    for hemi in ("lh", "rh"):
        prf, faces = np.zeros(n, np.int32), np.zeros(n, np.int32)
        prf[:e3], faces[e3:2 * e3] = 1, 2
        labels[hemi] = {"prf-visualrois": prf, "floc-faces": faces,
                        "nsdgeneral": np.ones(n, np.int32)}
    lay.write_surface_rois(root, labels)
    for s in range(sz.sessions):
        rows = trial_rows[s * lay.TRIALS:(s + 1) * lay.TRIALS]
        for hemi in ("lh", "rh"):
            b = rng.normal(0, 1.0, (n, lay.TRIALS))
            for k, p in enumerate(p for p in planted if p["roi"] == "V1v"):
                b[k] = _planted_trials(units[p["layer"]][:, p["unit"]], rows, rng) / 3000
            for k, p in enumerate(p for p in planted if p["roi"] == "FFA-1"):
                b[e3 + k] = _planted_trials(units[p["layer"]][:, p["unit"]], rows, rng) / 3000
            lay.write_surface_betas(root, s + 1, hemi, b)


def run(data: str | Path | None, out: str | Path, subset: str | None = None,
        device: str = "auto", progress: bool = True) -> StudyResult:
    """Run SAE-BrainMap on ``data`` (NSD, fetched or simulated) into ``out``."""
    import pandas as pd

    from cortexalign.sae.pipeline import BrainMapConfig
    from cortexalign.sae.runner import run_brainmap

    if data is None or not Path(data).is_dir():
        raise InputError("--data", "an NSD directory (fetched, or written by `cortexalign simulate "
                         "sae_brainmap`)", repr(None if data is None else str(data)),
                         "run `cortexalign simulate sae_brainmap --out DIR` and pass --data DIR")
    if subset not in (None, "cpu"):
        raise InputError("--subset", "'cpu' or none", repr(subset), "pass --subset cpu")
    data, out = Path(data), Path(out)
    sim = _load_sim(data)
    cfg = BrainMapConfig.model_validate(analysis_config(data, sim, subset))
    done = run_brainmap(cfg, out, device=None if device == "auto" else device, progress=progress)
    files = dict(done.files)
    summary = f"SAE-BrainMap: {len(cfg.layers)} layers of {cfg.model} in {done.seconds:.0f} s"
    planted_path = data / PLANT_FILE
    if planted_path.is_file() and (out / "dictionary.csv").is_file():
        planted = json.loads(planted_path.read_text())
        table = pd.read_csv(out / "dictionary.csv").set_index("voxel")
        rows = []
        for p in planted:
            got = table.loc[p["id"]] if p["id"] in table.index else None
            rows.append({**{k: p[k] for k in ("id", "roi", "layer", "unit")},
                         "found_layer": None if got is None else got["layer"],
                         "found_unit": None if got is None else int(got["unit"]),
                         "r": None if got is None else float(got["r"]),
                         "best_layer": None if got is None else got["best_layer"]})
        rec = pd.DataFrame(rows)
        rec["unit_recovered"] = (rec["found_layer"] == rec["layer"]) & (rec["found_unit"] == rec["unit"])
        rec["layer_recovered"] = rec["best_layer"] == rec["layer"]
        rec.to_csv(out / RECOVERY_FILE, index=False)
        files["recovery"] = out / RECOVERY_FILE
        summary += (f"; planted voxels: {int(rec['unit_recovered'].sum())}/{len(rec)} units and "
                    f"{int(rec['layer_recovered'].sum())}/{len(rec)} layers recovered")
    return StudyResult(out=out, files=files, summary=summary)
