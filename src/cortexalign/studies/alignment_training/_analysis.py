"""Held-out alignment with intervals, and the paired tests of lambda > 0 against lambda = 0.

For every run the final model's RDM over the held-out stimuli is compared with the held-out part
of the human IT RDMs (Spearman, subjects weighted as ``rsa`` weights them), and resampled over
held-out stimuli with ``stats.bootstrap_rdm_comparison``. Every run uses the same seed for those
resamples, so a resample draws the same stimuli for every model: differences between two models
are paired at the level of stimuli, and means over seeds at the level of each resample.

A lambda > 0 is compared with its lambda = 0 twin (same seed: same initialisation and task
batches) two ways: over seeds (the mean paired difference, an exact-size sign-flip test from
``stats.paired_comparison`` and a paired t-test — with 3 seeds the smallest two-sided sign-flip
p is 0.25, said in the report) and over stimuli (the percentile interval of the seed-mean
difference across stimulus resamples, and the share of resamples on the other side of 0).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.stats
import torch

from cortexalign.neural import RDMSet
from cortexalign.rdm import compute_rdm, upper_tri
from cortexalign.stats import (
    bootstrap_rdm_comparison,
    group_weights,
    paired_comparison,
    percentile_interval,
)

__all__ = ["RunOutcome", "run_outcome", "paired_rows", "lam_rows"]


@dataclass
class RunOutcome:
    """One run's final numbers: held-out alignment (value, bootstrap samples), accuracy."""

    lam: float
    seed: int
    heldout: float
    samples_b: np.ndarray
    ci: tuple[float, float]
    ceiling: tuple[float, float]
    train: float
    accuracy: float
    model_id: str


def run_outcome(result, heldout_target: RDMSet, layer: str, rdm_method: str, n_bootstrap: int,
                lam: float, seed: int) -> RunOutcome:
    """The outcome of one ``train_aligned`` result (its final held-out features)."""
    feats = result.heldout_features[layer].to(torch.float64)
    model_p = upper_tri(compute_rdm(feats, rdm_method, device="cpu", return_tensor=True))
    target_kp = torch.as_tensor(heldout_target.upper())
    w_k = torch.as_tensor(group_weights(heldout_target.groups("subject")))
    samples = bootstrap_rdm_comparison(model_p, target_kp, "spearman", n_bootstrap, seed=0)
    samples_b = (samples @ w_k).numpy()
    final = result.final
    ci = percentile_interval(samples_b, 0.95)
    return RunOutcome(lam, seed, float(final[f"heldout/{layer}"]), samples_b,
                      (float(ci[0]), float(ci[1])), tuple(final[f"heldout/{layer}/ceiling"]),
                      float(final[f"train/{layer}"]), float(final["accuracy"]), result.model_id)


def _interval(samples_b: np.ndarray) -> tuple[float, float]:
    return percentile_interval(samples_b, 0.95)


def lam_rows(outcomes: list[RunOutcome]) -> list[dict]:
    """Per lambda: mean held-out alignment over seeds with its stimulus-bootstrap interval, the
    ceiling, the mean train (circular) alignment and the task accuracy."""
    rows = []
    for lam in sorted({o.lam for o in outcomes}):
        runs = [o for o in outcomes if o.lam == lam]
        mean_b = np.mean([o.samples_b for o in runs], axis=0)
        acc = np.array([o.accuracy for o in runs])
        rows.append({"lam": lam, "n_seeds": len(runs),
                     "heldout": float(np.mean([o.heldout for o in runs])),
                     "heldout_ci": _interval(mean_b),
                     "heldout_sd_seeds": float(np.std([o.heldout for o in runs], ddof=1))
                     if len(runs) > 1 else math.nan,
                     "ceiling": runs[0].ceiling,
                     "train": float(np.mean([o.train for o in runs])),
                     "accuracy": float(acc.mean()),
                     "accuracy_sd": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan})
    return rows


def _paired(a: np.ndarray, b: np.ndarray, seed: int) -> dict:
    d = a - b
    out = {"mean": float(d.mean()), "per_seed": d.tolist()}
    if len(d) >= 2:
        flip = paired_comparison(a, b, method="sign_flip", n_perm=10000, seed=seed)
        out["sign_flip_p"] = float(flip.p_value)
        with warnings.catch_warnings():  # identical differences: scipy warns, p is NaN or 0
            warnings.simplefilter("ignore", RuntimeWarning)
            t = scipy.stats.ttest_rel(a, b)
        out["t_p"] = float(t.pvalue) if np.isfinite(t.pvalue) else math.nan
    return out


def paired_rows(outcomes: list[RunOutcome], seed: int = 0) -> list[dict]:
    """Each lambda > 0 against its lambda = 0 twins (same seeds): alignment gained, accuracy
    lost, the seed-level tests and the stimulus-level interval of the gain."""
    base = {o.seed: o for o in outcomes if o.lam == 0.0}
    rows = []
    for lam in sorted({o.lam for o in outcomes if o.lam > 0}):
        runs = sorted((o for o in outcomes if o.lam == lam and o.seed in base),
                      key=lambda o: o.seed)
        if not runs:
            continue
        twins = [base[o.seed] for o in runs]
        gain = _paired(np.array([o.heldout for o in runs]), np.array([t.heldout for t in twins]),
                       seed)
        lost = _paired(np.array([t.accuracy for t in twins]), np.array([o.accuracy for o in runs]),
                       seed)
        diff_b = np.mean([o.samples_b - t.samples_b for o, t in zip(runs, twins, strict=True)],
                         axis=0)
        ok = diff_b[np.isfinite(diff_b)]
        gain["stimulus_ci"] = _interval(diff_b)
        gain["stimulus_p"] = float(min(1.0, 2 * min((ok <= 0).mean(), (ok >= 0).mean())))
        rows.append({"lam": lam, "seeds": [o.seed for o in runs], "alignment_gained": gain,
                     "accuracy_lost": lost})
    return rows
