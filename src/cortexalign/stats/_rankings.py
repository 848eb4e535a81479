"""How well a benchmark separates models: rankings under resampling of stimuli (and subjects).

Input is a paired bootstrap: ``samples_bm[b, m]`` is model m's score on resample b, every model
scored on the *same* resampled stimuli (and subjects), plus the scores on the full data. From it:

- ``p_above[i, j]``: the probability that model i ranks above model j, the fraction of resamples
  with ``samples[b, i] > samples[b, j]`` (ties count one half);
- ``p_values[i, j]``: the two-sided paired bootstrap test of equal scores, from the resampled
  differences ``d_b = samples[b, i] - samples[b, j]``: ``min(1, 2 (1 + #{d_b on the far side of
  0}) / (B + 1))``, where the far side is the side opposite the observed difference (the
  percentile interval of the difference excludes 0 exactly when this is at most the level);
- ``separated[i, j]``: the pair's null rejected at ``alpha`` after the correction (Benjamini &
  Hochberg by default) over all m (m - 1) / 2 pairs;
- ``rank_ci``: each model's percentile interval of its rank over the resamples (1 = best);
- ``n_distinguishable``: the largest number of models that are pairwise separated, found greedily
  down the observed ranking (take the best model, then each next model separated from every one
  taken). It is the number of levels the benchmark can tell apart; 1 means it cannot order any
  pair.

Definitions are ours (documented here); the questions are those of Schütt et al. (2023, eLife
12:e82566) on model comparison under stimulus and subject resampling and of the critique of
benchmark rankings in Höfling et al. (2026, arXiv 2604.21780).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cortexalign.errors import InputError
from cortexalign.stats._multiple import adjust_p_values

__all__ = ["Discriminability", "discriminability"]


@dataclass(frozen=True)
class Discriminability:
    """How well scores separate models (see the module docstring for each quantity).

    Attributes
    ----------
    names : m model names, in the order of the arrays.
    scores_m : (m,) scores on the full data. p_above_mm : (m, m) probability that row ranks
        above column. p_values_mm, q_values_mm : (m, m) paired-bootstrap p-values and their
        corrected values (NaN on the diagonal). separated_mm : (m, m) bool.
    rank_m : (m,) observed ranks (1 = best). rank_low_m, rank_high_m : rank intervals.
    n_distinguishable : models pairwise separated along the ranking. fraction_separated :
        separated pairs / all pairs. alpha, correction, ci_level, n_bootstrap : the settings.
    """

    names: tuple[str, ...]
    scores_m: np.ndarray
    p_above_mm: np.ndarray
    p_values_mm: np.ndarray
    q_values_mm: np.ndarray
    separated_mm: np.ndarray
    rank_m: np.ndarray
    rank_low_m: np.ndarray
    rank_high_m: np.ndarray
    n_distinguishable: int
    fraction_separated: float
    alpha: float
    correction: str
    ci_level: float
    n_bootstrap: int

    def summary(self) -> dict[str, Any]:
        """JSON-able numbers of the whole benchmark (what the results store keeps)."""
        m = len(self.names)
        return {"n_models": m, "n_pairs": m * (m - 1) // 2,
                "fraction_separated": self.fraction_separated,
                "n_distinguishable": self.n_distinguishable, "alpha": self.alpha,
                "correction": self.correction, "ci_level": self.ci_level,
                "n_bootstrap": self.n_bootstrap}


def _ranks_bm(x_bm: np.ndarray) -> np.ndarray:
    """Ranks along models, 1 = highest, ties averaged (NaN scores rank last)."""
    x = np.where(np.isnan(x_bm), -np.inf, x_bm)
    above = (x[:, None, :] > x[:, :, None]).sum(axis=2)  # models strictly above each
    ties = (x[:, None, :] == x[:, :, None]).sum(axis=2)  # itself included
    return above + (ties + 1) / 2.0


def _check(samples_bm, scores_m, names, alpha: float, ci_level: float) -> tuple[np.ndarray, ...]:
    s = np.asarray(samples_bm, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] < 2 or s.shape[1] < 2:
        raise InputError("samples_bm", "a (B, m) array of paired bootstrap scores, B >= 2 "
                         "resamples of m >= 2 models", f"shape {s.shape}",
                         "score every model on the same resamples and stack them as columns")
    obs = np.asarray(scores_m, dtype=np.float64)
    if obs.shape != (s.shape[1],) or not np.isfinite(obs).all():
        raise InputError("scores_m", f"({s.shape[1]},) finite full-data scores", f"shape "
                         f"{obs.shape}", "pass one finite score per model column")
    if len(names) != s.shape[1] or len(set(names)) != len(names):
        raise InputError("names", f"{s.shape[1]} distinct model names", repr(list(names))[:80],
                         "give one distinct name per column")
    for name, v in (("alpha", alpha), ("ci_level", ci_level)):
        if not 0.0 < float(v) < 1.0:
            raise InputError(name, "a number in (0, 1)", repr(v), "e.g. alpha=0.05, "
                             "ci_level=0.95")
    return s, obs


def discriminability(samples_bm, scores_m, names, *, alpha: float = 0.05,
                     correction: str = "fdr_bh", ci_level: float = 0.95) -> Discriminability:
    """Pairwise separation, rank intervals and the number of models a benchmark tells apart.

    Parameters
    ----------
    samples_bm : (B, m) scores of m models on B paired resamples (NaN: a resample where a
        model's score is undefined; it counts as a tie in ``p_above`` and is left out of the
        differences).
    scores_m : (m,) the scores on the full data (they set the observed order).
    names : m model names.
    alpha : level of the pairwise tests after ``correction`` (``stats.CORRECTIONS``).
    ci_level : coverage of the rank intervals.

    Returns
    -------
    Discriminability
    """
    s, obs = _check(samples_bm, scores_m, names, alpha, ci_level)
    b, m = s.shape
    diff_bmm = s[:, :, None] - s[:, None, :]
    valid = ~np.isnan(diff_bmm)
    n_valid = valid.sum(axis=0)
    gt = np.where(valid, diff_bmm > 0, False).sum(axis=0)
    eq = np.where(valid, diff_bmm == 0, True).sum(axis=0) - (b - n_valid)
    p_above = (gt + 0.5 * eq + 0.5 * (b - n_valid)) / b
    observed = obs[:, None] - obs[None, :]
    # the far side of 0 from the observed difference (a zero difference: either side)
    far = np.where(observed[None] > 0, diff_bmm <= 0,
                   np.where(observed[None] < 0, diff_bmm >= 0, True))
    n_far = np.where(valid, far, False).sum(axis=0)
    p = np.minimum(1.0, 2.0 * (1.0 + n_far) / (n_valid + 1.0))
    iu = np.triu_indices(m, 1)
    p_mm = np.full((m, m), np.nan)
    p_mm[iu] = p[iu]
    q_mm = np.full((m, m), np.nan)
    q_mm[iu] = adjust_p_values(p[iu], correction)
    p_mm.T[iu], q_mm.T[iu] = p_mm[iu], q_mm[iu]
    separated = np.nan_to_num(q_mm, nan=1.0) <= alpha

    ranks_bm = _ranks_bm(s)
    a = (1.0 - ci_level) / 2.0
    low, high = np.quantile(ranks_bm, [a, 1.0 - a], axis=0)
    rank_m = _ranks_bm(obs[None])[0]
    chosen: list[int] = []
    for i in np.argsort(-obs, kind="stable"):
        if all(separated[i, j] for j in chosen):
            chosen.append(int(i))
    return Discriminability(
        names=tuple(str(n) for n in names), scores_m=obs, p_above_mm=p_above, p_values_mm=p_mm,
        q_values_mm=q_mm, separated_mm=separated, rank_m=rank_m, rank_low_m=low,
        rank_high_m=high, n_distinguishable=len(chosen),
        fraction_separated=float(separated[iu].mean()), alpha=float(alpha),
        correction=correction, ci_level=float(ci_level), n_bootstrap=int(b))
