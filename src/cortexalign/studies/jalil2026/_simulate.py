"""``cortexalign simulate jalil2026``: a Brain Observatory cache and a COCO set, planted.

Layout of the data directory::

    DIR/allen/manifest.json                 the BrainObservatoryCache root
    DIR/allen/experiment_containers.json    one row per container (area x Cre line x depth)
    DIR/allen/ophys_experiments.json        one row per experiment (three_session_B)
    DIR/allen/cell_specimens.json           one row per cell
    DIR/allen/ophys_experiment_data/<ophys_experiment_id>.nwb
    DIR/coco/annotations/instances.json     COCO instance segmentation (polygons)
    DIR/coco/images/<id>.png
    DIR/planted.json                        what was planted, for checking a study's output

The template (the scenes) is stored in the first experiment file only: the survey's files each
carry it, which at full size would repeat 127 MB in 96 files; the readers take it from the first
file that holds it. For power analyses, vary ``SimSpec`` (cells, trials, noise, planted gain) and
run the study on each simulation.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from cortexalign.errors import InputError
from cortexalign.studies.jalil2026._design import GENOTYPES, SIM_SIZES, SimSpec
from cortexalign.studies.jalil2026._nwb import (
    OphysFile,
    presentation_order,
    write_json,
    write_ophys_nwb,
)
from cortexalign.studies.jalil2026._scenes import scene_images, write_coco

__all__ = ["simulate", "simulate_spec", "planted_drive"]


def planted_drive(images_shw: np.ndarray, spec: SimSpec, batch_size: int = 8) -> np.ndarray:
    """(s,) z-scored drive of the planted neurons: each scene (grey, on the block's token grid,
    mean scene removed) projected on the block's mean attention map over the scenes (centred).

    The maps are computed by the study's own extraction (``bench`` map features) of
    ``spec.planted.model``, so a study that scores that entry sees the same maps.
    """
    from cortexalign.features import extract
    from cortexalign.models import load_model
    from cortexalign.neural import stimuli_on_grid
    from cortexalign.neural.allen import natural_scene_ids
    from cortexalign.stimuli import StimulusSet

    entry = spec.planted.model
    adapter = load_model(entry["name"], untrained=entry.get("untrained", False),
                         seed=entry.get("seed", 0), weights=entry.get("weights"),
                         **entry.get("kwargs", {}))
    stimuli = StimulusSet.from_arrays(images_shw, ids=natural_scene_ids(len(images_shw)))
    maps_sgg = np.asarray(extract(adapter, stimuli, [spec.planted.block], "attention",
                                  batch_size=batch_size, progress=False)[spec.planted.block].values)
    mean_gg = maps_sgg.mean(0) - maps_sgg.mean()
    pads = getattr(adapter.preprocess, "resize", "") == "longest_side_pad"
    grid_sgg = stimuli_on_grid(images_shw, maps_sgg.shape[1:], pad_square=pads)
    drive = ((grid_sgg - grid_sgg.mean(0)) * mean_gg).sum((1, 2))
    return (drive - drive.mean()) / drive.std()


def _control_drive(rng: np.random.Generator, n_images: int, n_cells: int) -> np.ndarray:
    """(cells, s) sparse random image selectivity, z-scored per cell (no spatial structure)."""
    sel = rng.lognormal(0.0, 1.0, (n_cells, n_images))
    return (sel - sel.mean(1, keepdims=True)) / sel.std(1, keepdims=True)


def _experiments(spec: SimSpec, seed: int) -> list[tuple[OphysFile, bool]]:
    out = []
    for a, area in enumerate(spec.areas):
        for e, (cre, depth) in enumerate(spec.experiments):
            k = a * len(spec.experiments) + e
            planted = (area, cre, depth) == (spec.planted.area, spec.planted.cre_line,
                                             spec.planted.depth)
            out.append((OphysFile(experiment_id=600_000_000 + 1000 * seed + k,
                                  container_id=511_000_000 + 1000 * seed + k, area=area,
                                  depth=depth, genotype=GENOTYPES[cre],
                                  specimen=f"{cre.split('-')[0]}-sim-{k}"), planted))
    return out


def simulate_spec(out: str | Path, spec: SimSpec, seed: int = 0, progress: bool = True) -> Path:
    """Write a simulated data directory of size ``spec`` into ``out`` (see the module doc)."""
    from rich.progress import track

    from cortexalign.neural.allen import cortical_layer

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError("out", "a new or empty directory", f"{str(out)!r}, not empty",
                         "choose another --out or remove it")
    if spec.planted.cre_line not in GENOTYPES or (spec.planted.cre_line, spec.planted.depth) \
            not in spec.experiments or spec.planted.area not in spec.areas:
        raise InputError("spec.planted", "an (area, Cre line, depth) the design images",
                         repr((spec.planted.area, spec.planted.cre_line, spec.planted.depth)),
                         "pick one of spec.areas x spec.experiments")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    data = tmp / "allen" / "ophys_experiment_data"
    data.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    template = scene_images(spec.n_images, spec.image_hw, seed)
    drive_s = planted_drive(template, spec)
    experiments, containers, cells = [], [], []
    files = _experiments(spec, seed)
    for k, (meta, planted) in enumerate(track(files, description="experiments",
                                              disable=not progress)):
        frames, onsets = presentation_order(spec.n_images, spec.trials, rng)
        drive_ns = (np.repeat(drive_s[None], spec.cells, 0) if planted
                    else _control_drive(rng, spec.n_images, spec.cells))
        gain = rng.uniform(0.5, 1.5, (spec.cells, 1)) * spec.planted.gain
        signal_nt = np.where(frames >= 0, gain * drive_ns[:, np.maximum(frames, 0)], 0.0)
        amp_nt = 1.0 + signal_nt + spec.noise * rng.normal(size=signal_nt.shape)
        cell_ids = 517_000_000 + 100_000 * seed + 100 * k + np.arange(spec.cells)
        write_ophys_nwb(data / f"{meta.experiment_id}.nwb", meta, frames, onsets, amp_nt,
                        cell_ids, template if k == 0 else None, noise=0.1 * spec.noise, rng=rng)
        cre = meta.genotype.split("/")[0]
        row = {"imaging_depth": meta.depth, "targeted_structure": meta.area, "cre_line": cre,
               "reporter_line": meta.genotype.split(";")[-1].split("/")[0],
               "donor_name": meta.specimen, "specimen_name": meta.specimen}
        containers.append({"id": meta.container_id, **row, "failed": False})
        experiments.append({"id": meta.experiment_id, **row, "experiment_container_id":
                            meta.container_id, "session_type": "three_session_B",
                            "acquisition_age_days": 100, "fail_eye_tracking": False})
        cells += [{"cell_specimen_id": int(c), "experiment_container_id": meta.container_id,
                   "area": meta.area, "imaging_depth": meta.depth, "tld1_name": cre,
                   "donor_full_genotype": meta.genotype, "planted": bool(planted)}
                  for c in cell_ids]
    root = tmp / "allen"
    write_json(root / "manifest.json", {"manifest": [
        {"key": "BASEDIR", "type": "dir", "spec": "."},
        {"key": "EXPERIMENT_DATA", "type": "file", "parent_key": "BASEDIR",
         "spec": "ophys_experiment_data/%d.nwb"}]})
    write_json(root / "experiment_containers.json", containers)
    write_json(root / "ophys_experiments.json", experiments)
    write_json(root / "cell_specimens.json", cells)
    coco = write_coco(tmp / "coco", spec.coco_images, spec.coco_hw, seed + 1)
    p = spec.planted
    write_json(tmp / "planted.json", {
        "seed": seed, "spec": dataclasses.asdict(spec),
        "group": {"area": p.area, "cre_line": p.cre_line.split("-")[0], "depth": p.depth,
                  "cortical_layer": cortical_layer(p.cre_line, p.depth)},
        "model": p.model, "block": p.block, "coco": str(coco.relative_to(tmp))})
    tmp.rename(out) if not out.exists() else (out.rmdir(), tmp.rename(out))
    return out


def simulate(out: str | Path, size: str = "cpu", seed: int = 0, progress: bool = True) -> Path:
    """The study's simulator (``cortexalign simulate jalil2026 --out DIR --size cpu|full``).

    Parameters
    ----------
    out : the data directory to write (new or empty).
    size : ``"cpu"`` (42 experiments, 504 neurons, 118 scenes x 50 trials, 12 COCO images) or
        ``"full"`` (96 experiments, 4,032 neurons, 100 COCO images); see ``SIM_SIZES``.
    seed : seed of the scenes, the responses and the noise.
    """
    if size not in SIM_SIZES:
        raise InputError("size", " or ".join(SIM_SIZES), repr(size), "pass --size cpu")
    return simulate_spec(out, SIM_SIZES[size], seed=seed, progress=progress)
