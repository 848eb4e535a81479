"""SAE-BrainMap from a config file: load everything, run the pipeline, record scores, report.

Order of work (nothing is written until every input has been loaded and checked):

1. Validate the config; load the voxels (``VOXEL_SOURCES``: NSD via ``load_nsd``, a 4-D NIfTI, a
   table), the stimuli (``nsd_stimuli.hdf5`` or any ``load_stimuli`` source, subset to the voxels'
   stimulus ids), the category labels, and the model (``load_model``), and check its layers.
2. If the results store already holds this analysis (same config, model weights, images and
   voxels) it is skipped (``force`` reruns it).
3. Extract patch tokens through the feature cache (``pooling='none'``), train or reload one SAE per
   layer (checkpoints under ``saes/``), match, analyse, write tables and maps (``sae.outputs``).
4. Record summary scores in ``results.duckdb`` (``brainmap_scores``), one job for the analysis,
   and write the report (``figure.png``, ``report.html``, ``best_layers.csv``).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import inspect
import json
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from cortexalign.bench import record_statistics
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural.fmri import load_nifti_responses, load_nsd, load_voxel_table
from cortexalign.results import RESULTS_FILE
from cortexalign.sae.pipeline import (
    BrainMapConfig,
    BrainMapResult,
    layer_tokens_from_model,
    load_brainmap_config,
    run_sae_brainmap,
)

__all__ = ["VOXEL_SOURCES", "BrainMapRun", "run_brainmap", "load_brainmap_voxels",
           "load_brainmap_stimuli", "read_labels", "brainmap_scores", "CITATIONS"]


HDF5_SUFFIXES = (".hdf5", ".h5")
CITATIONS = [
    "SAE-BrainMap: sparse autoencoders on CLIP ViT-B/16 layers matched to human fMRI voxels "
    "(arXiv 2506.11123).",
    "Allen, St-Yves, Wu et al. (2022) A massive 7T fMRI dataset to bridge cognitive neuroscience "
    "and artificial intelligence. Nature Neuroscience 25.",
]


@functools.wraps(load_nifti_responses)  # its signature is the options' schema
def _nifti(betas: str, stimulus_ids: str | list[str], roi_mask: str, **kwargs: Any) -> xr.DataArray:
    ids = (Path(stimulus_ids).read_text().split() if isinstance(stimulus_ids, str | Path)
           else list(stimulus_ids))
    return load_nifti_responses(betas, ids, roi_mask, **kwargs)


#: Voxel loaders of ``neural.source``: name -> fn(**options) -> (stimulus, neuroid) responses.
#: ``nifti`` also takes ``stimulus_ids`` as a text file of whitespace-separated ids.
VOXEL_SOURCES: dict[str, Callable[..., xr.DataArray]] = {"nsd": load_nsd, "nifti": _nifti,
                                                         "table": load_voxel_table}


def load_brainmap_voxels(spec: Mapping[str, Any]) -> xr.DataArray:
    """(stimulus, neuroid) responses from the config's ``neural`` block (repetitions averaged)."""
    options = dict(spec)
    source = options.pop("source", "nsd")
    if source not in VOXEL_SOURCES:
        raise UnknownNameError("voxel source (neural.source)", str(source), list(VOXEL_SOURCES))
    fn = VOXEL_SOURCES[source]
    params = list(inspect.signature(fn).parameters)
    bad = sorted(set(options) - set(params))
    if bad:
        raise InputError(f"neural.{bad[0]}", f"an option of the {source!r} loader ({', '.join(params)})",
                         repr(bad[0]), "check the spelling (neural.source picks the loader)")
    voxels = fn(**options)
    if voxels.dims != ("stimulus", "neuroid"):
        raise InputError("neural", "responses averaged over repetitions (stimulus, neuroid)",
                         f"dims {voxels.dims}", "leave neural.average at its default (true)")
    return voxels


def load_brainmap_stimuli(spec: Mapping[str, Any], stimulus_ids: list[str]) -> Any:
    """The images of ``stimulus_ids`` (in that order) from the config's ``stimuli`` block."""
    options = dict(spec)
    if "source" not in options:
        raise InputError("stimuli.source", "the images: nsd_stimuli.hdf5, a folder, an .npz file "
                         "or a bundled set", "nothing", "add stimuli: {source: PATH}")
    source = str(options.pop("source"))
    if Path(source).suffix.lower() in HDF5_SUFFIXES:
        from cortexalign.neural.fmri import load_nsd_stimuli

        return load_nsd_stimuli(source, stimulus_ids, **options)
    from cortexalign.stimuli import load_stimuli

    stimuli = load_stimuli(source, **options)
    have = set(stimuli.ids)
    missing = [s for s in stimulus_ids if s not in have]
    if missing:
        raise InputError("stimuli", f"every stimulus id of the voxel responses ({len(stimulus_ids)})",
                         f"{len(missing)} missing from {source!r} (first: {missing[:3]!r})",
                         "point stimuli.source at the images the responses were recorded with "
                         "(ids must match exactly)")
    return stimuli if list(stimuli.ids) == stimulus_ids else stimuli.subset(stimulus_ids)


def read_labels(path: str | Path, stimulus_ids: list[str]) -> np.ndarray:
    """(s,) category per stimulus from a CSV ``stimulus_id,category`` ("" where none is given)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("labels", "a CSV file stimulus_id,category", repr(str(path)),
                         "check the path, or leave labels unset")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"stimulus_id", "category"} <= set(reader.fieldnames or ()):
            raise InputError("labels", "columns stimulus_id,category", f"{reader.fieldnames}",
                             "name the columns stimulus_id and category")
        table = {r["stimulus_id"]: r["category"] for r in reader}
    if not set(table) & set(stimulus_ids):
        raise InputError("labels", "labels for the run's stimulus ids", f"none of {len(table)} "
                         f"ids of {path.name} among them (e.g. {next(iter(table), '')!r})",
                         "use the responses' stimulus ids (NSD: nsd%05d)")
    return np.asarray([table.get(s, "") for s in stimulus_ids], dtype=str)


@dataclass
class BrainMapRun:
    """What ``run_brainmap`` did: the result (None when skipped), files, and the stored scores."""

    out_dir: Path
    job_key: str
    skipped: bool
    result: BrainMapResult | None = None
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def _voxels_digest(voxels: xr.DataArray) -> str:
    return _digest(np.ascontiguousarray(voxels.values, np.float64).tobytes(),
                   [str(s) for s in voxels["stimulus"].values],
                   [str(n) for n in voxels["neuroid"].values])


def run_brainmap(config: BrainMapConfig | str | Path, out_dir: str | Path, *,
                 device: str | None = None, force: bool = False, progress: bool = False
                 ) -> BrainMapRun:
    """Run SAE-BrainMap from a config and record it in ``<out_dir>/results.duckdb``.

    Parameters
    ----------
    config : a ``BrainMapConfig`` or a YAML path (``configs/sae_brainmap.yaml``).
    out_dir : the results directory (its ``output_dir`` replaces the config's).
    device : overrides ``config.device``.
    force : rerun even if the store already holds this analysis.
    progress : show extraction progress bars.
    """
    t0 = time.perf_counter()
    cfg = config if isinstance(config, BrainMapConfig) else load_brainmap_config(config)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("out_dir", "a directory", f"the file {str(out)!r}", "choose another --out")
    cfg = cfg.model_copy(update={"output_dir": str(out), "device": device or cfg.device})
    from cortexalign.device import resolve_device
    from cortexalign.errors import Problems
    from cortexalign.features import FeatureCache, feature_keys
    from cortexalign.models import load_architecture, load_model
    from cortexalign.results import ResultsStore

    dev = resolve_device(cfg.device)
    # 1. load and check everything before writing anything, every problem at once; the model's
    # name, options and layers on its architecture alone, before any weights load
    problems = Problems()
    arch = problems.check("model", lambda: load_architecture(cfg.model, **cfg.model_kwargs))
    if arch is not None:
        known = arch.layers()
        for layer in cfg.layers:
            if layer not in known:
                problems.add("layers", UnknownNameError(f"layer of {cfg.model}", layer, known))
    voxels = problems.check("neural", lambda: load_brainmap_voxels(cfg.neural))
    if voxels is not None:
        ids = [str(s) for s in voxels["stimulus"].values]
        stimuli = problems.check("", lambda: load_brainmap_stimuli(cfg.stimuli, ids))
        labels = problems.check("", lambda: read_labels(cfg.labels, ids) if cfg.labels
                                else None)
    problems.raise_if_any("sae-brainmap config")
    adapter = load_model(cfg.model, device=dev, **cfg.model_kwargs)
    stored = cfg.model_dump(exclude={"output_dir", "device", "cache_dir", "batch_size",
                                     "layers_per_pass"})
    key = "sae_brainmap:" + _digest(stored, adapter.model_id, adapter.weights_digest,
                                    stimuli.content_hash, _voxels_digest(voxels))[:32]
    store_path = out / RESULTS_FILE
    if store_path.exists() and not force and ResultsStore(store_path, read_only=True).has_job(key):
        frame = ResultsStore(store_path, read_only=True).scores_frame(job_key=key)
        return BrainMapRun(out, key, True, scores=frame, seconds=time.perf_counter() - t0)
    # 2. compute, recording the attempt
    out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(store_path)
    config_yaml = yaml.safe_dump(cfg.model_dump(exclude={"output_dir"}), sort_keys=False)
    run_id = store.start_run(config_yaml, _digest(stored)[:16])
    store.start_job(key, run_id)
    try:
        cache = FeatureCache(cfg.cache_dir or out / "cache")
        tokens, n_prefix = layer_tokens_from_model(adapter, stimuli, cfg.layers, cache,
                                                   cfg.batch_size, cfg.layers_per_pass, progress)
        sources = {k: f"{adapter.model_id}:{v}" for k, v in
                   feature_keys(adapter, stimuli, cfg.layers, "none").items()}
        res = run_sae_brainmap(tokens, n_prefix, list(stimuli.ids), voxels, cfg, labels=labels,
                               token_sources=sources, device=str(dev))
        records = brainmap_scores(res, voxels, model=cfg.model, model_id=adapter.model_id)
        store.record_job(key, run_id, records, replace=force)  # --force recomputes
    except BaseException as err:
        store.fail_job(key, run_id, f"{type(err).__name__}: {err}")
        store.finish_run(run_id, "failed" if isinstance(err, Exception) else "interrupted")
        raise
    store.add_notes(run_id, "citation", [("cited by the run", c) for c in CITATIONS])
    record_statistics(store, run_id)  # the report reads them from the store
    store.finish_run(run_id)
    frame = store.scores_frame(job_key=key)
    files = dict(res.files)
    files["results"] = store_path
    files.update(_write_report(frame[frame["metric"] == "sae_best_r"], out, cfg.name))
    return BrainMapRun(out, key, False, res, frame, files, time.perf_counter() - t0)


def _write_report(headline: pd.DataFrame, out: Path, name: str) -> dict[str, Path]:
    """The layer-wise figure and the HTML report; the scores are already stored, so a report
    that fails is a warning (``cortexalign report DIR`` can write it later), not a lost run."""
    from cortexalign.reports import write_summary

    try:
        return write_summary(out, headline, name)
    except Exception as err:  # noqa: BLE001 - the analysis itself succeeded
        warnings.warn(f"SAE-BrainMap: the report was not written ({type(err).__name__}: {err}); "
                      f"the scores are in {out / RESULTS_FILE}", RuntimeWarning, stacklevel=3)
        return {}


def brainmap_scores(res: BrainMapResult, voxels: xr.DataArray, *, model: str, model_id: str
                    ) -> list[Any]:
    """Summary ``ScoreRecord`` rows of a run, per layer and ROI (target ``<responses>/<roi>``,
    plus ``<responses>/all``).

    - ``sae_best_r``: the best similarity in the ROI, max over its voxels of the layer's best unit
      r (the seed's headline number, over all ROIs and layers).
    - ``sae_mean_best_r``: the mean over the ROI's voxels of the layer's best unit r; ceilings
      (when the responses carry NSD's ``noise_ceiling`` in percent) are the mean over voxels of
      sqrt(NC / 100), the highest r a voxel's averaged response allows.
    - ``sae_roi_rsa`` (layer ``dictionary``): Spearman rho between the ROI's brain and dictionary
      voxel-by-voxel correlation matrices.
    ``extra`` holds the voxel counts, the voxels whose dictionary unit lies in the layer, the
    layer's SAE metrics and, with permutations, the voxels significant at FWE 0.05.
    """
    from cortexalign.results import ScoreRecord

    match, n_layers, s = res.match, len(res.match.layers), next(iter(res.units.values())).shape[0]
    roi_n = (np.asarray(voxels["roi"].values).astype(str) if "roi" in voxels.coords
             else np.full(voxels.sizes["neuroid"], ""))
    groups = {"all": np.ones(len(roi_n), bool),
              **{r: roi_n == r for r in sorted(set(roi_n) - {""})}}
    ceil_n = None
    if "noise_ceiling" in voxels.coords:
        ceil_n = np.sqrt(np.clip(np.asarray(voxels["noise_ceiling"].values, np.float64), 0, None)
                         / 100)
    name = voxels.name or "voxels"
    rows = []
    for li, layer in enumerate(match.layers):
        sm = vars(res.sae_metrics[layer])
        for roi, sel in groups.items():
            r_v = match.max_r_ln[li][sel].astype(np.float64)
            extra = {"layer_index": li, "n_layers": n_layers, "n_voxels": int(sel.sum()),
                     "n_dictionary_voxels": int((res.dictionary.layer_n[sel] == li).sum()),
                     **{f"sae_{k}": float(v) for k, v in sm.items()}}
            if res.permutation is not None:
                extra["n_significant_fwe05"] = int((res.permutation.p_fwe_n[sel] <= 0.05).sum())
            common = dict(model=model, model_id=model_id, layer=layer, target=f"{name}/{roi}",
                          n_stimuli=int(s), extra=extra)
            rows.append(ScoreRecord(metric="sae_best_r", value=float(r_v.max()), **common))
            c = float(np.nanmean(ceil_n[sel])) if ceil_n is not None and np.isfinite(
                ceil_n[sel]).any() else None
            rows.append(ScoreRecord(metric="sae_mean_best_r", value=float(r_v.mean()),
                                    ceiling_low=c, ceiling_high=c, **common))
    for roi, rho in res.roi_rsa.items():
        if np.isfinite(rho):
            rows.append(ScoreRecord(model=model, model_id=model_id, layer="dictionary",
                                    target=f"{name}/{roi}", metric="sae_roi_rsa", value=float(rho),
                                    n_stimuli=int(s), extra={"n_voxels": int((roi_n == roi).sum())}))
    return rows
