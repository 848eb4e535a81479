"""Statistics of a run: permutation p-values, FDR across a target's groups, model comparisons.

- ``PERMUTATION_TESTS``: metric name -> ``f(features_sd, target, *, n_permutations, seed,
  **metric_options) -> p``, for metrics that do not compute their own p-value (``rsa``). Metrics
  that take ``n_permutations`` themselves (``map_*``) get it passed by the runner instead.
  ``rsa_permutation_p_from_rdm`` takes the model RDM instead of the features (the streamed path).
- ``add_fdr``: Benjamini-Hochberg (1995) adjusted p-values of the rows of one job (the area x
  Cre-line grid of one model layer, metric and neural spec), stored as ``extra["p_fdr"]``;
  ``grid_fdr`` recomputes them over any family of a scores frame (e.g. every layer and model).
- ``paired_model_comparison``: two models' per-neuroid scores on each target, compared by
  random sign flips of the paired differences (``stats.paired_comparison``), BH across targets.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from cortexalign.errors import InputError
from cortexalign.metrics import METRICS
from cortexalign.metrics._compare import average_ranks, compare_vectors
from cortexalign.metrics._rdm import rdm_tensor, upper_tri
from cortexalign.metrics._rsa_metric import _model_rdm_tensor, _neural_vectors, ceiling_groups
from cortexalign.results import ScoreRecord
from cortexalign.stats import adjust_p_values, exact_p_value, group_weights, paired_comparison

__all__ = ["PERMUTATION_TESTS", "rsa_permutation_p", "rsa_permutation_p_from_rdm", "add_fdr",
           "grid_fdr", "paired_model_comparison", "PER_NEUROID_KEYS"]

PER_NEUROID_KEYS = ("per_neuroid", "r_normalized", "r")
"""Keys of ``extra`` holding per-neuroid scores, in order of preference."""


def rsa_permutation_p(features_sd, target, *, n_permutations: int, seed: int = 0,
                      rdm_method: str = "correlation", compare: str = "spearman",
                      neural_rdm_method: str | None = None, ceiling_by: str | None = "subject",
                      chunk: int = 128, **_other) -> float:
    """Permutation p-value of the ``rsa`` score: the model RDM's stimuli (rows and columns
    together) are relabelled ``n_permutations`` times (Mantel 1967; Nili et al. 2014) and the
    subject-weighted comparison recomputed; one-sided (greater), ``(1 + #null >= obs) / (1 + P)``.
    Other ``rsa`` options (``ci_level``, ``n_splits``) do not change the statistic.
    """
    x = torch.as_tensor(np.asarray(features_sd, dtype=np.float64))
    return _permutation_p(rdm_tensor(x, rdm_method), target, n_permutations=n_permutations,
                          seed=seed, compare=compare,
                          neural_rdm_method=neural_rdm_method or rdm_method,
                          ceiling_by=ceiling_by, chunk=chunk)


def rsa_permutation_p_from_rdm(model_rdm_ss, target, *, n_permutations: int, seed: int = 0,
                               rdm_method: str = "correlation", compare: str = "spearman",
                               neural_rdm_method: str | None = None,
                               ceiling_by: str | None = "subject", chunk: int = 128,
                               **_other) -> float:
    """``rsa_permutation_p`` for an (s, s) model RDM computed beforehand (``rsa_from_rdm``'s
    input, validated the same way); the same permutations, so the same p-value for
    ``compute_rdm(features_sd, rdm_method)``. ``rdm_method`` only sets the default
    ``neural_rdm_method``. The upper triangle is mirrored before permuting, as ``rsa_from_rdm``
    reads only it.
    """
    r = _model_rdm_tensor(model_rdm_ss, torch.device("cpu"))
    upper = torch.triu(r, 1)
    return _permutation_p(upper + upper.T, target, n_permutations=n_permutations, seed=seed,
                          compare=compare, neural_rdm_method=neural_rdm_method or rdm_method,
                          ceiling_by=ceiling_by, chunk=chunk)


def _permutation_p(rdm_ss: torch.Tensor, target, *, n_permutations: int, seed: int,
                   compare: str, neural_rdm_method: str, ceiling_by: str | None,
                   chunk: int) -> float:
    dev = rdm_ss.device
    target_kp, source = _neural_vectors(target, rdm_ss.shape[0], neural_rdm_method, dev)
    groups, _ = ceiling_groups(source, ceiling_by, target_kp.shape[0])
    w_k = torch.as_tensor(group_weights(groups), device=dev)
    observed = float(compare_vectors(upper_tri(rdm_ss)[None], target_kp, compare)[0] @ w_k)
    if compare == "spearman":  # relabelling permutes the ranks: rank once, then Pearson
        rdm_ss, target_kp, compare = _rank_matrix(rdm_ss), average_ranks(target_kp), "pearson"
    gen = torch.Generator().manual_seed(int(seed))
    s = rdm_ss.shape[0]
    null = []
    for start in range(0, int(n_permutations), chunk):
        c = min(chunk, int(n_permutations) - start)
        perm_cs = torch.argsort(torch.rand(c, s, generator=gen), dim=1).to(dev)
        rdm_css = rdm_ss[perm_cs[:, :, None], perm_cs[:, None, :]]
        null.append(compare_vectors(upper_tri(rdm_css), target_kp, compare) @ w_k)
    return exact_p_value(observed, torch.cat(null).cpu().numpy(), "greater")


def _rank_matrix(rdm_ss: torch.Tensor) -> torch.Tensor:
    """(s, s) symmetric matrix of the average ranks of the upper triangle (zero diagonal)."""
    s = rdm_ss.shape[0]
    iu = torch.triu_indices(s, s, 1, device=rdm_ss.device)
    ranks = torch.zeros_like(rdm_ss)
    ranks[iu[0], iu[1]] = average_ranks(upper_tri(rdm_ss)[None])[0].to(rdm_ss.device)
    return ranks + ranks.T


PERMUTATION_TESTS: dict[str, Callable[..., float]] = {"rsa": rsa_permutation_p}


def add_fdr(records: Sequence[ScoreRecord], method: str = "fdr_bh") -> list[ScoreRecord]:
    """The records with ``extra["p_fdr"]`` (adjusted over these records; None where no p)."""
    p = np.array([math.nan if r.p_value is None else float(r.p_value) for r in records])
    if np.isnan(p).all():
        return list(records)
    q = adjust_p_values(p, method)
    return [dataclasses.replace(r, extra={**r.extra, "p_fdr": None if np.isnan(v) else float(v),
                                          "fdr_family": f"{method} over {int((~np.isnan(p)).sum())}"
                                                        " groups of this target"})
            for r, v in zip(records, q, strict=True)]


def _extra(frame: pd.DataFrame) -> list[dict]:
    return [e if isinstance(e, dict) else json.loads(e or "{}") for e in frame["extra"]]


def grid_fdr(frame: pd.DataFrame, by: Sequence[str] = ("metric",),
             method: str = "fdr_bh") -> pd.DataFrame:
    """``frame`` (a scores frame) with a ``p_adjusted`` column: ``method`` applied within each
    family of rows sharing the values of ``by`` (columns, or ``target_source`` from extra)."""
    df = frame.copy()
    df["target_source"] = [e.get("target_source", t) for e, t in zip(_extra(df), df["target"],
                                                                      strict=True)]
    unknown = [c for c in by if c not in df.columns]
    if unknown:
        raise InputError("by", f"columns of the scores frame ({', '.join(df.columns)})",
                         repr(unknown), "group by model, layer, metric or target_source")
    df["p_adjusted"] = np.nan
    for _, family in df.groupby(list(by), sort=False):
        df.loc[family.index, "p_adjusted"] = adjust_p_values(family["p_value"].astype(float),
                                                             method)
    return df


def _best_row(rows: pd.DataFrame, higher: bool, layer: str | None) -> pd.Series:
    if layer is not None:
        rows = rows[rows["layer"] == layer]
        if rows.empty:
            raise InputError("layer", "a layer with scores", repr(layer), "check the layer name")
    return rows.loc[rows["value"].idxmax() if higher else rows["value"].idxmin()]


def _per_neuroid(row: pd.Series) -> np.ndarray:
    extra = _extra(pd.DataFrame([row]))[0]
    key = next((k for k in PER_NEUROID_KEYS if k in extra), None)
    if key is None:
        raise InputError("metric", f"a metric storing per-neuroid scores ({PER_NEUROID_KEYS})",
                         f"{row['metric']!r} without them", "compare models on ridge, pls or "
                         "a map_* metric")
    return np.array([np.nan if v is None else v for v in extra[key]], dtype=np.float64)


def paired_model_comparison(frame: pd.DataFrame, model_a: str, model_b: str, metric: str, *,
                            layer_a: str | None = None, layer_b: str | None = None,
                            n_perm: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Model A vs model B on every target both were scored on, paired over neuroids.

    Each model is taken at its best layer per target (or at ``layer_a``/``layer_b``); the
    per-neuroid scores (``PER_NEUROID_KEYS``) are compared with ``stats.paired_comparison``
    (sign flips, two-sided); neuroids without a finite score in either model are dropped.

    Returns
    -------
    One row per target: layer_a, layer_b, mean_a, mean_b, mean_diff (a - b in the metric's
    units; for RMSE lower is better), n_neuroids, p_value, p_fdr (BH across the targets).
    """
    higher = METRICS.entry(metric).meta.get("higher_is_better", True)
    df = frame[frame["metric"] == metric]
    rows = []
    for target, sub in df.groupby("target", sort=False):
        a, b = sub[sub["model"] == model_a], sub[sub["model"] == model_b]
        if a.empty or b.empty:
            continue
        ra, rb = _best_row(a, higher, layer_a), _best_row(b, higher, layer_b)
        va, vb = _per_neuroid(ra), _per_neuroid(rb)
        if va.shape != vb.shape:
            raise InputError("frame", "both models scored on the same neuroids",
                             f"{va.shape} vs {vb.shape} on {target!r}", "use one run's scores")
        ok = np.isfinite(va) & np.isfinite(vb)
        res = paired_comparison(va[ok], vb[ok], n_perm=n_perm, seed=seed)
        rows.append({"target": target, "layer_a": ra["layer"], "layer_b": rb["layer"],
                     "mean_a": float(va[ok].mean()), "mean_b": float(vb[ok].mean()),
                     "mean_diff": res.observed, "n_neuroids": int(ok.sum()),
                     "p_value": res.p_value})
    if not rows:
        raise InputError("frame", f"scores of both {model_a!r} and {model_b!r} for {metric!r}",
                         "no shared target", "check the model labels and the metric")
    out = pd.DataFrame(rows)
    out["p_fdr"] = adjust_p_values(out["p_value"].to_numpy())
    return out
