"""SAE-BrainMap from a config file, as the ``sae_brainmap`` analysis kind of the one runner.

Order of work (nothing is written until every input has been loaded and checked):

1. ``brainmap_request``: validate the config; load the voxels (``VOXEL_SOURCES``: NSD via
   ``load_nsd``, a 4-D NIfTI, a table), the stimuli (``nsd_stimuli.hdf5`` or any
   ``load_stimuli`` source, subset to the voxels' stimulus ids), the category labels, and the
   model (``load_model``), and check its layers; every problem is reported at once.
2. The runner (``bench.run_analyses``) runs the kind :class:`SAEBrainMapKind` under the
   directory's lock, in one run of the store: a job per layer trains (or reloads) its SAE
   (checkpoints under ``saes/``), then the matching job matches, analyses, writes tables and maps
   (``sae.outputs``) and records the summary scores (``brainmap_scores``). Jobs the store holds
   are skipped (same config, model weights, images; the matching also the same voxels), so a
   killed analysis resumes after its last finished SAE; ``force`` reruns every job.
3. The report (``figure.png``, ``report.html``, ``best_layers.csv``) is written from the store
   when the analysis was computed.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml
from rich.console import Console

from cortexalign.bench import (
    ANALYSES,
    AnalysisKind,
    Plan,
    RunContext,
    RunRequest,
    Unit,
    run_analyses,
)
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.results import RESULTS_FILE, ResultsStore
from cortexalign.sae.inputs import (
    VOXEL_SOURCES,
    load_brainmap_stimuli,
    load_brainmap_voxels,
    read_labels,
)
from cortexalign.sae.pipeline import (
    BrainMapConfig,
    BrainMapResult,
    layer_tokens_from_model,
    load_brainmap_config,
    run_sae_brainmap,
    train_or_load_sae,
)

__all__ = ["VOXEL_SOURCES", "BrainMapRun", "run_brainmap", "load_brainmap_voxels",
           "load_brainmap_stimuli", "read_labels", "brainmap_scores", "CITATIONS", "brainmap_request",
           "brainmap_keys", "BrainMapKeys", "BrainMapJob", "SAEBrainMapKind"]


CITATIONS = [
    "SAE-BrainMap: sparse autoencoders on CLIP ViT-B/16 layers matched to human fMRI voxels "
    "(arXiv 2506.11123).",
    "Allen, St-Yves, Wu et al. (2022) A massive 7T fMRI dataset to bridge cognitive neuroscience "
    "and artificial intelligence. Nature Neuroscience 25.",
]


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
    """Run SAE-BrainMap from a config, through the runner, into ``<out_dir>/results.duckdb``.

    Parameters
    ----------
    config : a ``BrainMapConfig`` or a YAML path (``configs/sae_brainmap.yaml``).
    out_dir : the results directory (its ``output_dir`` replaces the config's).
    device : overrides ``config.device``.
    force : rerun even if the store already holds this analysis (the SAE checkpoints under
        ``saes/`` are reused; the matching is recomputed and its rows replaced).
    progress : show extraction progress bars.
    """
    t0 = time.perf_counter()
    cfg = config if isinstance(config, BrainMapConfig) else load_brainmap_config(config)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("out_dir", "a directory", f"the file {str(out)!r}", "choose another --out")
    cfg = cfg.model_copy(update={"output_dir": str(out), "device": device or cfg.device})
    request = brainmap_request(cfg)  # 1. everything loaded and checked; nothing written yet
    key = request.inputs["keys"].match

    def outputs(summary) -> dict[str, Path]:  # the report, when the analysis was computed now
        res = summary.products.get(KIND)
        if res is None:
            return {}
        frame = ResultsStore(out / RESULTS_FILE, read_only=True).scores_frame(job_key=key)
        return _write_report(frame[frame["metric"] == "sae_best_r"], out, cfg.name)

    # 2. one run of the sae_brainmap kind: SAEs per layer, then the matching (bench.run_analyses)
    summary = run_analyses(request, out, progress=progress, allow_config_change=True,
                           replace=force, outputs=outputs,
                           console=Console(stderr=True, quiet=not progress))
    res = summary.products.get(KIND)
    frame = ResultsStore(out / RESULTS_FILE, read_only=True).scores_frame(job_key=key)
    if res is None:  # every job was in the store: nothing recomputed, nothing rewritten
        return BrainMapRun(out, key, True, scores=frame, seconds=time.perf_counter() - t0)
    files = {**res.files, "results": out / RESULTS_FILE,
             **{k: v for k, v in summary.files.items() if k not in res.files and k != "results"}}
    return BrainMapRun(out, key, False, res, frame, files, time.perf_counter() - t0)


@dataclass(frozen=True)
class BrainMapKeys:
    """The job keys of an SAE-BrainMap: one SAE per layer (``train``: what determines the SAE,
    not the voxels), and the matching (``match``: everything, voxels included)."""

    train: dict[str, str]
    match: str


def brainmap_keys(cfg: BrainMapConfig, adapter: Any, stimuli: Any, voxels: xr.DataArray
                  ) -> BrainMapKeys:
    """The stable job keys of an analysis (see :class:`BrainMapKeys`)."""
    stored = cfg.model_dump(exclude={"output_dir", "device", "cache_dir", "batch_size",
                                     "layers_per_pass"})
    match = "sae_brainmap:" + _digest(stored, adapter.model_id, adapter.weights_digest,
                                      stimuli.content_hash, _voxels_digest(voxels))[:32]
    sae = {k: stored[k] for k in ("model", "model_kwargs", "sae", "epochs", "max_tokens",
                                  "images_per_chunk")}
    train = {layer: "sae_train:" + _digest(sae, layer, adapter.model_id, adapter.weights_digest,
                                           stimuli.content_hash)[:32] for layer in cfg.layers}
    return BrainMapKeys(train, match)


def brainmap_request(cfg: BrainMapConfig) -> RunRequest:
    """Load and check everything an SAE-BrainMap needs, every problem at once, before anything
    is written: the model's name, options and layers on its architecture alone (before any
    weights load), the voxels, the stimuli, the labels; then the model."""
    from cortexalign.device import resolve_device
    from cortexalign.errors import Problems
    from cortexalign.models import load_architecture, load_model

    dev = resolve_device(cfg.device)
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
    return RunRequest(
        cfg, (KIND,), yaml.safe_dump(cfg.model_dump(exclude={"output_dir"}), sort_keys=False),
        _digest(stored)[:16], stimuli, {}, dev,
        Path(cfg.cache_dir) if cfg.cache_dir else None,
        {"voxels": voxels, "labels": labels, "adapter": adapter,
         "keys": brainmap_keys(cfg, adapter, stimuli, voxels)})


KIND = "sae_brainmap"


@dataclass(frozen=True)
class BrainMapJob:
    """One job of an SAE-BrainMap: ``step`` ``train`` (the SAE of ``layer``, checkpointed under
    ``saes/``; no rows) or ``match`` (every layer's units matched to the voxels, the dictionary,
    the analyses, tables and maps; the ``brainmap_scores`` rows)."""

    key: str
    step: str
    layer: str = ""

    @property
    def label(self) -> str:
        """What failures name it by."""
        return f"SAE {self.layer}" if self.step == "train" else "SAE-BrainMap matching"


@dataclass(frozen=True)
class _Tokens:
    tokens: dict[str, Any]
    n_prefix: int
    sources: dict[str, str]


class SAEBrainMapKind(AnalysisKind):
    """SAE-BrainMap as an analysis kind of the runner: one unit (the analysis), a job per
    layer's SAE, then the matching job; a failure stops the run (``fail_fast``)."""

    name = KIND
    placement = "driver"
    fail_fast = True

    def units(self, ctx: RunContext) -> list[Unit]:
        """One unit: the analysis of the config."""
        return [Unit(KIND, ctx.config.name, title=f"SAE-BrainMap {ctx.config.name}")]

    def plan(self, ctx: RunContext, unit: Unit) -> Plan:
        """A ``train`` job per layer (in the config's order), then the ``match`` job."""
        keys: BrainMapKeys = ctx.inputs["keys"]
        return Plan([BrainMapJob(keys.train[layer], "train", layer)
                     for layer in ctx.config.layers] + [BrainMapJob(keys.match, "match")])

    def prepare(self, ctx: RunContext, plan: Plan, todo: list[BrainMapJob]) -> _Tokens:
        """Every layer's patch tokens through the feature cache (lazily read)."""
        from cortexalign.features import feature_keys

        cfg, adapter = ctx.config, ctx.inputs["adapter"]
        tokens, n_prefix = layer_tokens_from_model(adapter, ctx.stimuli, cfg.layers, ctx.cache,
                                                   cfg.batch_size, cfg.layers_per_pass,
                                                   ctx.progress)
        sources = {k: f"{adapter.model_id}:{v}" for k, v in
                   feature_keys(adapter, ctx.stimuli, cfg.layers, "none").items()}
        return _Tokens(tokens, n_prefix, sources)

    def execute(self, ctx: RunContext, job: BrainMapJob, shared: _Tokens) -> list:
        """Train (or reload) a layer's SAE, or run the matching and return its score rows
        (its ``BrainMapResult`` goes to ``summary.products['sae_brainmap']``)."""
        cfg, dev = ctx.config, str(ctx.device)
        if job.step == "train":
            train_or_load_sae(job.layer, shared.tokens[job.layer], shared.n_prefix, cfg,
                              device=dev, source=shared.sources.get(job.layer))
            return []
        voxels = ctx.inputs["voxels"]
        res = run_sae_brainmap(shared.tokens, shared.n_prefix, list(ctx.stimuli.ids), voxels,
                               cfg, labels=ctx.inputs["labels"], token_sources=shared.sources,
                               device=dev)
        ctx.summary.products[KIND] = res
        return brainmap_scores(res, voxels, model=cfg.model,
                               model_id=ctx.inputs["adapter"].model_id)

    def citations(self, config: Any) -> list[tuple[str, str]]:
        """SAE-BrainMap and the Natural Scenes Dataset (``CITATIONS``)."""
        return [("cited by the run", c) for c in CITATIONS]


ANALYSES.add(KIND, SAEBrainMapKind(), description="SAE-BrainMap: one SAE per layer, units "
             "matched to voxels (cortexalign.sae)")


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
