"""Banded ridge regression: one ridge model over several feature spaces, each scaled by its own
weight, the weights and the penalty chosen per target by inner K-fold CV, on any torch device.

Model (Nunez-Elizalde, Huth & Gallant 2019, NeuroImage 197:482; Dupre la Tour, Eickenberg,
Nunez-Elizalde & Gallant 2022, NeuroImage 264:119728): for feature spaces ``X_1..X_m`` the kernel
``K(gamma) = sum_i gamma_i X_i X_i^T`` with ``gamma`` on the simplex and a penalty ``alpha``; the
pair (gamma, alpha) of each target is searched over candidate gammas x a grid of alphas.

It makes himalaya's choices (``BandedRidgeCV`` = ``GroupRidgeCV(solver="random_search")`` and
``solve_multiple_kernel_ridge_random_search``, ``fit_intercept=True``, ``local_alpha=True``):

- candidates (``banded_gammas``): ``n_iter`` Dirichlet samples drawn by
  ``np.random.RandomState(seed)``, cycling through ``concentration`` (default 0.1, 1.0) and
  interleaved, the first replaced by the uniform weights ``1/m`` (only the first: the one-hot
  gammas are not added); or an explicit ``(c, m)`` array of gammas;
- score per inner fold ``-sum((y - pred)**2) / n_val``, mean over folds in float64, ``+ 1e-10 *
  log(alpha)`` (ties go to the larger penalty), first maximum over alphas;
- candidates are visited in order and a target moves to a later gamma only when its score beats
  the best so far by more than float64 eps (2.2e-16);
- inner splits ``KFold(inner_folds, shuffle=True, random_state=seed)``; features and targets
  centred on the training rows (the intercept), again on each inner training set.

How it differs from himalaya: each space's centred Gram ``X_i X_i^T`` (s x s) and cross Gram with
the test rows are formed once; a candidate's kernel is their weighted sum, and every inner fold's
centred kernel is derived from it and eigendecomposed (``_ridge``'s kernel route), so the
features are never touched again. The per-target products run over chunks of targets with all
alphas at once. After the search one eigendecomposition per chosen gamma refits all its targets.

The split of the prediction (``split_mtn``) is himalaya's ``predict(split=True)``: the part of
space i is ``gamma_i * Kc_i(test, train) @ dual_weights`` (centred cross Gram), and
``pred_tn = split_mtn.sum(0) + mean_n``.

``banded_ridge`` is the public entry: named feature spaces and a responses DataArray, outer K-fold
over stimuli (each space scaled with training-fold statistics, ``_partition.SET_SCALINGS``), the
solver per fold, held-out r, R^2 and the per-space R^2 split of every neuroid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import KFold

from cortexalign.compute import sized_by, total_gram_work
from cortexalign.device import resolve_device
from cortexalign.errors import InputError
from cortexalign.metrics._encoding import DEFAULT_ALPHAS, encoding_scores
from cortexalign.metrics._partition import SET_SCALINGS, check_sets_target, named_sets
from cortexalign.metrics._ridge import (
    CHUNK_ELEMENTS,
    TIE_SLOPE,
    _check,
    _fold_predictors,
    _inner_kernel_bases,
    _inner_mse,
    _target_chunk,
    ridge_dtype,
)

__all__ = ["BandedRidgeFit", "BandedRidgeScore", "banded_gammas", "banded_ridge", "r2_split",
           "solve_banded_ridge_cv"]

EPS = float(np.finfo(np.float64).eps)  # himalaya's margin before a later gamma wins


@dataclass(frozen=True)
class BandedRidgeFit:
    """Result of ``solve_banded_ridge_cv``; float64 tensors on the input's device.

    pred_tn : (t, n) predictions of the test rows.
    split_mtn : (m, t, n) part of each feature space; ``pred_tn = split_mtn.sum(0) + mean_n``.
    mean_n : (n,) training mean of each target (the intercept on centred features).
    gamma_nm : (n, m) chosen space weights (a row of ``gammas_cm``), alpha_n : (n,) penalty.
    cv_score_n : (n,) mean inner-fold ``-MSE`` at the chosen (gamma, alpha).
    gammas_cm : (c, m) the candidates searched, in order.
    """

    pred_tn: torch.Tensor
    split_mtn: torch.Tensor
    mean_n: torch.Tensor
    gamma_nm: torch.Tensor
    alpha_n: torch.Tensor
    cv_score_n: torch.Tensor
    gammas_cm: torch.Tensor


def banded_gammas(n_iter: int, n_spaces: int, concentration=(0.1, 1.0), seed: int = 0
                  ) -> np.ndarray:
    """(n_iter, n_spaces) candidate gammas, as himalaya's ``generate_dirichlet_samples`` with
    ``random_state=seed`` followed by ``gammas[0] = 1 / n_spaces``."""
    rs = np.random.RandomState(seed)
    conc = np.atleast_1d(np.asarray(concentration, dtype=np.float64))
    per = int(np.ceil(n_iter / len(conc)))
    draws = [np.full((per, n_spaces), 1.0 / n_spaces) if c == np.inf
             else rs.dirichlet([c] * n_spaces, per) for c in conc]
    g_cm = np.swapaxes(np.stack(draws), 0, 1).reshape(-1, n_spaces)[:n_iter]
    g_cm[0] = 1.0 / n_spaces
    return g_cm


def _candidates(n_iter, gammas, concentration, n_spaces: int, seed: int) -> np.ndarray:
    if gammas is None:
        if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
            raise InputError("n_iter", "a positive int (Dirichlet candidates)", repr(n_iter),
                             "e.g. n_iter=20, or pass explicit gammas=(c, m) array")
        conc = np.atleast_1d(np.asarray(concentration, dtype=np.float64))
        if conc.ndim != 1 or not len(conc) or not (conc > 0).all():
            raise InputError("concentration", "Dirichlet concentrations > 0 (inf: uniform)",
                             repr(concentration), "himalaya's default is (0.1, 1.0)")
        return banded_gammas(int(n_iter), n_spaces, conc, seed)
    g_cm = np.asarray(gammas, dtype=np.float64)
    if g_cm.ndim != 2 or g_cm.shape[1] != n_spaces or not len(g_cm) \
            or not np.isfinite(g_cm).all() or (g_cm < 0).any() or (g_cm.sum(1) <= 0).any():
        raise InputError("gammas", f"a (candidates, {n_spaces}) array of weights >= 0, each row "
                         "with a positive sum", f"shape {g_cm.shape}" + (
                             " with negative, non-finite or all-zero rows" if g_cm.ndim == 2
                             and g_cm.shape[1] == n_spaces else ""),
                         "e.g. np.eye(m) (one space each) and np.full((1, m), 1/m)")
    return g_cm


def _check_spaces(xs_sd, y_sn, xs_td) -> None:
    ok = isinstance(xs_sd, Sequence) and isinstance(xs_td, Sequence) and len(xs_sd) > 0 \
        and all(isinstance(x, torch.Tensor) for x in (*xs_sd, *xs_td))
    if not ok or len(xs_sd) != len(xs_td):
        raise InputError("xs_sd, xs_td", "two equally long, non-empty lists of tensors (one "
                         "(s, d_i) training and one (t, d_i) test matrix per feature space)",
                         f"{type(xs_sd).__name__} and {type(xs_td).__name__}"
                         + (f" of lengths {len(xs_sd)}, {len(xs_td)}" if ok else ""),
                         "pass [x1_sd, x2_sd, ...] and [x1_td, x2_td, ...]")
    for i, (x_sd, x_td) in enumerate(zip(xs_sd, xs_td, strict=True)):
        if x_sd.ndim != 2 or x_td.ndim != 2 or x_sd.shape[1] != x_td.shape[1] \
                or len(x_sd) != len(xs_sd[0]) or len(x_td) != len(xs_td[0]):
            raise InputError(f"xs_sd[{i}]", f"2-D, {len(xs_sd[0])} rows, as many columns as "
                             f"xs_td[{i}], which has {len(xs_td[0])} rows",
                             f"shapes {tuple(x_sd.shape)} and {tuple(x_td.shape)}",
                             "every space must describe the same training and test stimuli")


def _search(g_mss, y_sn, gammas_cg, alpha_a, splits, dtype, chunk):
    """Best candidate index, alpha and score per target over all candidates (himalaya's rule)."""
    dev, n = g_mss.device, y_sn.shape[1]
    best_c = torch.zeros(n, dtype=torch.long, device=dev)
    best_a = torch.ones(n, dtype=torch.float64, device=dev)
    best_s = torch.full((n,), -torch.inf, dtype=torch.float64, device=dev)
    tie_a1 = TIE_SLOPE * torch.log(alpha_a)[:, None]
    for ci, gamma_m in enumerate(gammas_cg):
        inner = _inner_kernel_bases(torch.einsum("m,mst->st", gamma_m, g_mss), splits, dtype)
        w_f_avr = _fold_predictors(inner, alpha_a, dtype)
        for start in range(0, n, chunk):
            y64 = y_sn[:, start:start + chunk]
            score_n, idx_n = (tie_a1 - _inner_mse(inner, w_f_avr, splits, y64, dtype)).max(0)
            sl = slice(start, start + y64.shape[1])
            win = score_n > best_s[sl] + EPS
            best_s[sl] = torch.where(win, score_n, best_s[sl])
            best_c[sl] = torch.where(win, ci, best_c[sl])
            best_a[sl] = torch.where(win, alpha_a[idx_n], best_a[sl])
    return best_c, best_a, best_s - TIE_SLOPE * torch.log(best_a)


def _refit(g_mss, k_mts, y_sn, gammas_cg, best_c, best_a, dtype, chunk):
    """(m, t, n) split predictions: one eigh of the full kernel per chosen candidate."""
    m, t, n = k_mts.shape[0], k_mts.shape[1], y_sn.shape[1]
    split_mtn = torch.zeros(m, t, n, dtype=torch.float64, device=y_sn.device)
    yc_sn = y_sn - y_sn.mean(0)
    for ci in torch.unique(best_c).tolist():
        gamma_m = gammas_cg[ci]
        lam_r, q_sr = torch.linalg.eigh(torch.einsum("m,mst->st", gamma_m, g_mss))
        lam_r, q_sr = lam_r.clamp_min(0.0), q_sr.to(dtype)
        kq_mtr = (gamma_m[:, None, None] * k_mts).to(dtype) @ q_sr
        idx = torch.nonzero(best_c == ci)[:, 0]
        for start in range(0, len(idx), chunk):
            cols = idx[start:start + chunk]
            z_rn = q_sr.T @ yc_sn[:, cols].to(dtype)
            z_rn = z_rn / (lam_r[:, None] + best_a[cols][None]).to(dtype)
            split_mtn[:, :, cols] = (kq_mtr @ z_rn).to(torch.float64)
    return split_mtn


def solve_banded_ridge_cv(xs_sd: Sequence[torch.Tensor], y_sn: torch.Tensor,
                          xs_td: Sequence[torch.Tensor], *, alphas, n_iter: int = 20,
                          gammas=None, concentration=(0.1, 1.0), inner_folds: int = 5,
                          seed: int = 0, dtype: torch.dtype | str = torch.float64,
                          target_chunk: int | None = None) -> BandedRidgeFit:
    """Banded ridge with an intercept; (gamma, alpha) chosen per target by inner K-fold CV.

    Parameters
    ----------
    xs_sd : m training feature spaces, each (s, d_i). y_sn : (s, n) training targets.
    xs_td : the same m spaces for the test rows, each (t, d_i). All on one device.
    alphas : (a,) penalty grid, finite and > 0.
    n_iter : number of candidate gammas drawn from the Dirichlet (``banded_gammas``).
    gammas : explicit (c, m) candidates (weights >= 0); overrides ``n_iter``/``concentration``.
    concentration : Dirichlet concentrations, cycled through (himalaya's default).
    inner_folds, seed : ``KFold(inner_folds, shuffle=True, random_state=seed)``; ``seed`` also
        seeds the Dirichlet draws.
    dtype : precision of the products with the targets (Grams and eigh always float64).
    target_chunk : targets processed at once (default: about 2**25 / (a * validation rows)).

    Returns
    -------
    BandedRidgeFit: ``pred_tn`` (t, n), ``split_mtn`` (m, t, n), ``mean_n``, ``gamma_nm`` (n, m),
    ``alpha_n``, ``cv_score_n``, ``gammas_cm``.
    """
    dtype = ridge_dtype(dtype)
    _check_spaces(xs_sd, y_sn, xs_td)
    # _ridge's checks of y_sn, alphas, inner_folds and target_chunk, on (s, 1) stand-ins
    alpha_a = _check(torch.empty(len(xs_sd[0]), 1), y_sn, torch.empty(len(xs_td[0]), 1), alphas,
                     inner_folds, target_chunk, "auto")
    g_cm = _candidates(n_iter, gammas, concentration, len(xs_sd), seed)
    dev = xs_sd[0].device
    alpha_a = alpha_a.to(dev)
    g_mss, k_mts = [], []
    for x_sd, x_td in zip(xs_sd, xs_td, strict=True):
        x64 = x_sd.to(device=dev, dtype=torch.float64)
        mean_d = x64.mean(0)
        x64, xt64 = x64 - mean_d, x_td.to(device=dev, dtype=torch.float64) - mean_d
        g_mss.append(x64 @ x64.T)
        k_mts.append(xt64 @ x64.T)
    g_mss, k_mts = torch.stack(g_mss), torch.stack(k_mts)
    y64 = y_sn.to(device=dev, dtype=torch.float64)
    splits = [(torch.as_tensor(tr, device=dev), torch.as_tensor(va, device=dev)) for tr, va in
              KFold(int(inner_folds), shuffle=True, random_state=seed).split(np.arange(len(y64)))]
    n_val = max(len(va) for _, va in splits)
    chunk = _target_chunk(target_chunk) or max(
        1, CHUNK_ELEMENTS // (len(alpha_a) * max(n_val, k_mts.shape[1] * len(xs_sd))))
    gammas_cg = torch.as_tensor(g_cm, device=dev)
    best_c, best_a, score_n = _search(g_mss, y64, gammas_cg, alpha_a, splits, dtype, chunk)
    split_mtn = _refit(g_mss, k_mts, y64, gammas_cg, best_c, best_a, dtype, chunk)
    mean_n = y64.mean(0)
    return BandedRidgeFit(split_mtn.sum(0) + mean_n, split_mtn, mean_n, gammas_cg[best_c],
                          best_a, score_n, gammas_cg)


@dataclass(frozen=True, eq=False)
class BandedRidgeScore:
    """Result of ``banded_ridge``; per-neuroid arrays are (n,) float64, from held-out stimuli.

    Attributes
    ----------
    space_names : the feature spaces, in the order given (the m columns of ``gammas``).
    r, r2 : Pearson r and R^2 of the pooled held-out predictions (``encoding_scores``).
    r2_split : {space: (n,)} held-out R^2 of each space's part (himalaya's ``r2_score_split``,
        product measure, responses centred over stimuli).
    r2_intercept : (n,) the same for the part left, each fold's intercept minus the mean
        response (usually near 0, may be negative): ``sum(r2_split) + r2_intercept == r2``.
    gammas : (n_folds, n, m) chosen space weights; alphas : (n_folds, n) chosen penalties.
    candidates : (c, m) the gammas searched (shared by every outer fold).
    neuroid_ids, n_stimuli, n_folds, scaling : what produced it.
    """

    space_names: tuple[str, ...]
    r: np.ndarray
    r2: np.ndarray
    r2_split: dict[str, np.ndarray]
    r2_intercept: np.ndarray
    gammas: np.ndarray
    alphas: np.ndarray
    candidates: np.ndarray
    neuroid_ids: tuple[str, ...]
    n_stimuli: int
    n_folds: int
    scaling: str

    @property
    def median_r(self) -> float:
        """Median over neuroids of the held-out Pearson r (NaNs ignored)."""
        return float(np.nanmedian(self.r))

    @property
    def median_r2_split(self) -> dict[str, float]:
        """Median over neuroids of each space's R^2 part (need not sum to the median R^2)."""
        return {k: float(np.nanmedian(v)) for k, v in self.r2_split.items()}


def r2_split(y_sn: np.ndarray, parts_ksn: np.ndarray) -> np.ndarray:
    """(k, n) product-measure split of R^2 (himalaya ``r2_score_split``, include_correlation) of
    the prediction ``y.mean(0) + parts_ksn.sum(0)``, responses centred over stimuli: component k
    is ``sum_s (2 yc p_k - p_k P) / sum_s yc**2`` with ``P`` the sum of the parts, so the
    components sum to ``1 - SSE / SST``, that prediction's R^2."""
    yc_sn = y_sn - y_sn.mean(0)
    total_sn = parts_ksn.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (2 * yc_sn[None] * parts_ksn - parts_ksn * total_sn[None]).sum(1) / (yc_sn**2).sum(0)


@sized_by(lambda features, target, **_: 5 * total_gram_work(features))
def banded_ridge(features, target, *, n_folds: int = 5, seed: int = 0, alphas=None,
                 n_iter: int = 20, gammas=None, concentration=(0.1, 1.0), inner_folds: int = 5,
                 scaling: str = "zscore", device=None, dtype=None,
                 target_chunk: int | None = None) -> BandedRidgeScore:
    """Cross-validated banded ridge encoding of every neuroid from named feature spaces.

    Parameters
    ----------
    features : {name: (s, d_i) array} for 1 or more spaces (numpy, torch or ``Features``, whose
        stimulus ids are checked against the target's), rows in the target's stimulus order.
    target : responses (stimulus, neuroid[, repetition]); repetitions are averaged.
    n_folds, seed : outer ``KFold(n_folds, shuffle=True, random_state=seed)``; inner seed
        ``seed + fold`` (``cross_validated_predictions``' convention); the candidates are drawn
        once with ``seed`` and shared by every fold.
    alphas : penalty grid (default ``DEFAULT_ALPHAS``). n_iter, gammas, concentration,
        inner_folds, dtype, target_chunk : as ``solve_banded_ridge_cv``.
    scaling : a ``SET_SCALINGS`` name, applied per space with training-fold statistics.
    device : where the solver runs (None: the default device).

    Returns
    -------
    BandedRidgeScore with per-neuroid held-out r, R^2 and per-space R^2 split, chosen gammas
    and alphas per fold.

    References: Nunez-Elizalde, Huth & Gallant (2019) NeuroImage 197:482; Dupre la Tour et al.
    (2022) NeuroImage 264:119728.
    """
    names, xs, ids = _named(features)
    y_sn = check_sets_target(xs, ids, target, scaling, n_folds, "banded ridge")
    s = len(y_sn)
    g_cm = _candidates(n_iter, gammas, concentration, len(xs), seed)
    dev = resolve_device(device)
    alphas = DEFAULT_ALPHAS if alphas is None else alphas
    # parts of the held-out predictions: one per space, then each fold's intercept (mean_n)
    pred_sn, parts_ksn = np.zeros(y_sn.shape), np.zeros((len(xs) + 1, *y_sn.shape))
    chosen_g, chosen_a = [], []
    for fold, (tr, te) in enumerate(KFold(int(n_folds), shuffle=True,
                                          random_state=seed).split(y_sn)):
        parts = [SET_SCALINGS[scaling](x_sd[tr], x_sd[te]) for x_sd in xs]
        fit = solve_banded_ridge_cv(
            [torch.as_tensor(p[0], device=dev) for p in parts],
            torch.as_tensor(y_sn[tr], device=dev), [torch.as_tensor(p[1], device=dev) for p in parts],
            alphas=alphas, gammas=g_cm, inner_folds=inner_folds, seed=seed + fold,
            dtype=torch.float64 if dtype is None else dtype, target_chunk=target_chunk)
        pred_sn[te] = fit.pred_tn.cpu().numpy()
        parts_ksn[:-1, te] = fit.split_mtn.cpu().numpy()
        parts_ksn[-1, te] = fit.mean_n.cpu().numpy()
        chosen_g.append(fit.gamma_nm.cpu().numpy())
        chosen_a.append(fit.alpha_n.cpu().numpy())
    r, r2 = encoding_scores(y_sn, pred_sn)
    parts_ksn[-1] -= y_sn.mean(0)
    *split_mn, intercept_n = r2_split(y_sn, parts_ksn)
    return BandedRidgeScore(
        space_names=names, r=r, r2=r2, r2_split=dict(zip(names, split_mn, strict=True)),
        r2_intercept=intercept_n,
        gammas=np.stack(chosen_g), alphas=np.stack(chosen_a), candidates=g_cm,
        neuroid_ids=tuple(str(i) for i in target["neuroid"].values), n_stimuli=s,
        n_folds=int(n_folds), scaling=scaling)


def _named(features) -> tuple[tuple[str, ...], list[np.ndarray], dict[str, tuple]]:
    """Names, (s, d_i) float64 arrays and, for ``Features`` spaces, their stimulus ids."""
    if not isinstance(features, Mapping) or not features:
        got = "an empty dict" if isinstance(features, Mapping) else type(features).__name__
        raise InputError("features", "a dict of one or more named (s, d) feature spaces", got,
                         "e.g. {'layer3': acts_sd, 'pixels': pixels_sd}")
    return named_sets(features)
