"""Allen natural-scenes data usable from a config: ``NEURAL`` and stimulus-set registrations.

Each entry takes a ``path`` that may be one file, a folder of files, or an AllenSDK cache
directory (the files are found where the caches keep them), so a config names the data once::

    neural:
      - source: allen.ophys_natural_scenes
        options: {path: /data/allen/brain_observatory_cache, statistic: mean}
    stimuli:
      source: allen.natural_scenes
      options: {path: /data/allen/brain_observatory_cache}

=====================================  =========================================================
``allen.ophys_natural_scenes``         two-photon: ``<cache>/ophys_experiment_data/*.nwb`` (only
                                       the experiments that showed natural scenes are read)
``allen.ecephys_natural_scenes``       Neuropixels: ``<cache>/session_<id>/session_<id>.nwb``
``allen.response_table``               a cell x image ``.csv``/``.parquet`` table
``allen.natural_scenes`` (stimuli)     the template: an ophys NWB file (or a cache / folder of
                                       them: the first that holds the template), or the
                                       Neuropixels ``natural_scene_templates`` folder
=====================================  =========================================================
"""

from __future__ import annotations

from pathlib import Path

import h5py
import xarray as xr

from cortexalign.errors import InputError
from cortexalign.neural._loaders import NEURAL
from cortexalign.neural.allen._ecephys import load_ecephys_natural_scenes
from cortexalign.neural.allen._ophys import NS_PRESENTATION, NS_TEMPLATE, load_ophys_natural_scenes
from cortexalign.neural.allen._tables import load_response_table
from cortexalign.neural.allen._templates import load_natural_scenes_stimuli
from cortexalign.stimuli import BUNDLED, IMAGE_SUFFIXES, StimulusSet

__all__ = ["find_nwb_files", "ALLEN_CITATION_OPHYS", "ALLEN_CITATION_ECEPHYS"]

ALLEN_CITATION_OPHYS = ("de Vries, Lecoq, Buice et al. (2020). A large-scale standardized "
                        "physiological survey reveals functional organization of the mouse visual "
                        "cortex. Nat. Neurosci. 23:138-151 (Allen Brain Observatory)")
ALLEN_CITATION_ECEPHYS = ("Siegle, Jia, Durand et al. (2021). Survey of spiking in the mouse "
                          "visual system reveals functional hierarchy. Nature 592:86-92")
_OPHYS_SUBDIR = "ophys_experiment_data"
_TEMPLATE_DIR = "natural_scene_templates"


def _has_any(path: Path, keys: tuple[str, ...]) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return any(k in f for k in keys)
    except OSError:
        return False


def find_nwb_files(path: str | Path, kind: str = "ophys") -> list[Path]:
    """The NWB files under ``path`` that hold natural scenes, sorted.

    Parameters
    ----------
    path : one ``.nwb`` file (returned as is, checked by the loader), a folder of them, or an
        AllenSDK cache root (``ophys_experiment_data/`` for ``kind="ophys"``;
        ``session_*/session_*.nwb`` for ``kind="ecephys"``).
    kind : ``"ophys"`` (files showing the natural-scenes stimulus) or ``"ecephys"``.
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise InputError("path", "an NWB file, a folder of NWB files or an AllenSDK cache "
                         "directory", repr(str(p)), "check the path (see `cortexalign datasets`)")
    if kind == "ophys":
        root = p / _OPHYS_SUBDIR if (p / _OPHYS_SUBDIR).is_dir() else p
        files = sorted(root.glob("*.nwb"))
        keep = [f for f in files if _has_any(f, NS_PRESENTATION)]
        what = "ophys experiment files that showed natural_scenes (three_session_B)"
    else:
        files = sorted(p.glob("*.nwb")) or sorted(p.glob("session_*/session_*.nwb"))
        keep = [f for f in files if _has_any(f, ("intervals/natural_scenes_presentations",))]
        what = "Neuropixels session files with natural_scenes_presentations"
    if not keep:
        raise InputError("path", what, f"{len(files)} .nwb file(s) in {str(p)!r}, none with "
                         "natural scenes", "point at the cache root or at the session-B files")
    return keep


@NEURAL.register("allen.ophys_natural_scenes", citation=ALLEN_CITATION_OPHYS,
                 stimuli="allen.natural_scenes",
                 description="Allen Brain Observatory two-photon natural-scene responses (NWB "
                             "file, folder or AllenSDK cache in options.path)")
def ophys_natural_scenes(path: str, ids: list[str] | None = None, **options) -> xr.DataArray:
    """Trial responses (stimulus, neuroid, repetition) of every cell in the natural-scenes
    experiments under ``path``; ``options`` go to ``load_ophys_natural_scenes`` (window,
    baseline, statistic, include_blank). ``ids`` keeps only those images, in that order (give
    the stimuli the same ``ids``)."""
    data = load_ophys_natural_scenes(find_nwb_files(path, "ophys"), **options)
    return data if ids is None else _keep_ids(data, ids)


def _keep_ids(data: xr.DataArray, ids: list[str]) -> xr.DataArray:
    have = set(data["stimulus"].values.astype(str).tolist())
    missing = [str(i) for i in ids if str(i) not in have]
    if missing:
        raise InputError("ids", "stimulus ids of the data (ns000..)", f"{missing[:5]} absent",
                         "pick ids the template holds")
    return data.sel(stimulus=[str(i) for i in ids])


@NEURAL.register("allen.ecephys_natural_scenes", citation=ALLEN_CITATION_ECEPHYS,
                 stimuli="allen.natural_scenes",
                 description="Allen Visual Coding Neuropixels natural-scene spike counts (session "
                             "NWB file, folder or EcephysProjectCache in options.path)")
def ecephys_natural_scenes(path: str | list, **options) -> xr.DataArray:
    """Spike counts of every unit of the sessions under ``path`` (or of a list of session
    files; units concatenated); ``options`` go to ``load_ecephys_natural_scenes``."""
    files = list(path) if isinstance(path, (list, tuple)) else find_nwb_files(path, "ecephys")
    sessions = [load_ecephys_natural_scenes(f, **options) for f in files]
    if len(sessions) == 1:
        return sessions[0]
    n_rep = max(s.sizes["repetition"] for s in sessions)
    padded = [s.pad(repetition=(0, n_rep - s.sizes["repetition"])) for s in sessions]
    return xr.concat(padded, dim="neuroid", join="exact", combine_attrs="drop_conflicts")


@NEURAL.register("allen.response_table", citation=ALLEN_CITATION_OPHYS,
                 stimuli="allen.natural_scenes",
                 description="A precomputed cell x image table (.csv/.parquet) with metadata "
                             "columns (area, cre_line, depth...)")
def response_table(path: str, **options) -> xr.DataArray:
    """``load_response_table(path, **options)``."""
    return load_response_table(path, **options)


@BUNDLED.register("allen.natural_scenes", citation=ALLEN_CITATION_OPHYS,
                  description="Allen natural-scenes template (118 images, ids ns000..ns117) from "
                              "options.path: an ophys NWB file/cache or a folder of templates")
def natural_scenes(path: str, include_blank: bool = False,
                   ids: list[str] | None = None) -> StimulusSet:
    """The template as a ``StimulusSet`` whose ids match the responses' (see module docstring);
    ``ids`` keeps only those images, in that order (e.g. a subset for a quick run)."""
    p = Path(path)
    if p.is_dir() and (p / _TEMPLATE_DIR).is_dir():
        p = p / _TEMPLATE_DIR
    if p.is_dir() and not any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir()):
        holders = [f for f in find_nwb_files(p, "ophys") if _has_any(f, NS_TEMPLATE)]
        if not holders:
            raise InputError("path", "an ophys NWB file holding the natural-scenes template",
                             f"no such file under {str(p)!r}", "point at a three_session_B file")
        p = holders[0]
    stimuli = load_natural_scenes_stimuli(p, include_blank=include_blank)
    return stimuli if ids is None else stimuli.subset([str(i) for i in ids])
