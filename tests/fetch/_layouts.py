"""Small files in each source's real layout, keyed by the path of their official URL.

Allen two-photon: NWB 1.0 experiment files written by the neural tests' writer
(``allen_nwb_files``) and an ``ophys_experiments.json`` with the fields of the API's
(``id``, ``stimulus_name``, ``imaging_depth``, ``targeted_structure.acronym``,
``specimen.donor.transgenic_lines``). Neuropixels: a pynwb session, ``sessions.csv`` and the 118
scene TIFFs. NSD: the tiny NSD of the SAE tests (``_nsd_files``) plus the files the plan lists.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

_TESTS = Path(__file__).resolve().parents[1]
for _sub in ("neural", "sae"):
    if str(_TESTS / _sub) not in sys.path:
        sys.path.insert(0, str(_TESTS / _sub))

from _nsd_files import write_betas, write_nsd  # noqa: E402
from allen_nwb_files import CUX2, SST, _ophys_file  # noqa: E402

OPHYS = "visual-coding-2p"
ECEPHYS = "visual-coding-neuropixels/ecephys-cache"
#: (id, stimulus_name, area, depth, driver line, writer metadata)
EXPERIMENTS = [(501021421, "three_session_B", "VISal", 275, "Sst-IRES-Cre", SST),
               (501940850, "three_session_B", "VISp", 175, "Cux2-CreERT2", CUX2),
               (502000000, "three_session_A", "VISp", 175, "Cux2-CreERT2", CUX2)]


def _experiment(eid, stim, area, depth, driver) -> dict:
    return {"id": eid, "stimulus_name": stim, "imaging_depth": depth,
            "experiment_container_id": eid // 10,
            "targeted_structure": {"acronym": area},
            "specimen": {"donor": {"transgenic_lines": [
                {"name": driver, "transgenic_line_type_name": "driver"}]}}}


def ophys_nwb(path: Path, meta: dict, seed: int, n_images: int = 4, side: int = 32) -> None:
    """A natural-scenes experiment: ``n_images`` images of ``side`` px, 4 repetitions each."""
    rng = np.random.default_rng(seed)
    frames = rng.permutation(np.concatenate([np.repeat(np.arange(n_images), 4), [-1, -1]]))
    n_cells = 6
    amp = rng.normal(1.0, 0.3, (n_cells, len(frames))) + \
        np.where(frames >= 0, frames, 0)[None] * rng.normal(0, 1, (n_cells, 1))
    template = rng.integers(0, 256, (n_images, side, side), dtype=np.uint8)
    _ophys_file(path, frames.astype(np.int64), amp, np.arange(1000, 1000 + n_cells),
                rng.normal(0, 0.1, n_cells), template, meta)


def allen_ophys(tmp: Path) -> dict[str, bytes]:
    """The bucket's ``visual-coding-2p`` files for ``EXPERIMENTS``."""
    out = {f"{OPHYS}/ophys_experiments.json": json.dumps(
        [_experiment(*e[:5]) for e in EXPERIMENTS]).encode(),
        f"{OPHYS}/experiment_containers.json": json.dumps(
            [{"id": e[0] // 10, "imaging_depth": e[3]} for e in EXPERIMENTS]).encode(),
        f"{OPHYS}/cell_specimens.json": json.dumps(
            [{"cell_specimen_id": 1000 + k, "experiment_container_id": 50194085}
             for k in range(6)]).encode()}
    for k, (eid, *_, meta) in enumerate(EXPERIMENTS):
        path = tmp / f"{eid}.nwb"
        ophys_nwb(path, dict(meta, session=str(eid)), seed=k)
        out[f"{OPHYS}/ophys_experiment_data/{eid}.nwb"] = path.read_bytes()
    return out


def _tiff(k: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((12, 16), k * 2, np.uint8)).save(buf, format="TIFF")
    return buf.getvalue()


def allen_ecephys(tmp: Path, session_nwb: Path | None = None) -> dict[str, bytes]:
    """The bucket's ``ecephys-cache`` tables, one brain_observatory_1.1 session and one
    functional_connectivity session (only listed), and the 118 templates."""
    header = "id,session_type,full_genotype,ecephys_structure_acronyms\n"
    rows = ('715093703,brain_observatory_1.1,Sst-IRES-Cre/wt;Ai32(RCL-ChR2(H134R)_EYFP)/wt,'
            '"[\'VISp\', \'VISl\', \'CA1\']"\n'
            '766640955,functional_connectivity,wt/wt,"[\'VISp\']"\n')
    out = {f"{ECEPHYS}/sessions.csv": (header + rows).encode()}
    for table in ("probes", "channels", "units"):
        out[f"{ECEPHYS}/{table}.csv"] = b"id,ecephys_session_id\n1,715093703\n"
    body = session_nwb.read_bytes() if session_nwb is not None else b"\x89HDF\r\n\x1a\n" + \
        bytes(2000)
    out[f"{ECEPHYS}/session_715093703/session_715093703.nwb"] = body
    for k in range(118):
        out[f"{ECEPHYS}/natural_scene_templates/natural_scene_{k}.tiff"] = _tiff(k)
    return out


def nsd(tmp: Path, files: list[str]) -> dict[str, bytes]:
    """A tiny NSD (``_nsd_files``) plus stand-ins for every other file the plan lists."""
    root = tmp / "nsd_src"
    ids = write_nsd(root)
    write_betas(root, ids)
    out = {}
    for rel in files:
        p = root / rel
        if not p.is_file() and rel.endswith(".nii.gz"):  # other ROIs, ncsnr: on the same grid
            import nibabel as nib
            from _nsd_files import AFFINE, SHAPE

            p.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), AFFINE), p)
        if p.is_file():
            out[rel] = p.read_bytes()
        elif rel.endswith(".ctab"):
            out[rel] = b"0 Unknown\n1 region\n"
        else:
            out[rel] = f"stand-in for {rel}".encode()
    return out
