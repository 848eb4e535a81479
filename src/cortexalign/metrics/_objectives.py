"""Differentiable alignment objectives: the metrics' own definitions, kept in the autograd graph.

Each objective computes the value its metric reports, through the same functions, so a model
trained on an objective is trained on exactly what the metric later measures:

- ``rsa_objective``: the model RDM (``RDM_METHODS``) against the target's RDMs, compared by
  ``pearson`` (``compare_pearson``, the metric's function) or by ``spearman`` with the model's
  ranks made soft (``soft_rank``; the target's ranks are constants, ``average_ranks``), weighted
  over RDMs as ``rsa`` weights them (each subject's RDMs average, then the subjects). With
  ``compare="pearson"`` the value equals ``rsa(..., compare="pearson").value``; with
  ``"spearman"`` it equals ``rsa(...).value`` once ``strength`` is below every gap between
  the sorted model dissimilarities (``soft_rank``), and approaches it as ``strength -> 0``.
  ``strength`` is in rank units: the model's p dissimilarities are z-scored and scaled by
  ``p / sqrt(12)``, the standard deviation of the ranks 1..p, before the soft rank, so 1.0 pools
  neighbours about one rank apart whatever the RDM's scale or size. Only pooled neighbours carry
  a gradient (the hard rank has none); from a few units up everything pools and the objective is
  the Pearson correlation of the model's dissimilarities with the target's ranks. Training wants
  a strength of order 0.3-1.
- ``cka_objective``: ``linear`` or ``linear_debiased`` CKA (``CKA_KINDS``, the metric's functions).
- ``ridge_objective``: the ``ridge`` encoding metric's value (median over neuroids of the Pearson r
  of pooled held-out predictions, outer K-fold over stimuli, intercept) with each fold's ridge
  solved in closed form in the graph. The per-neuroid penalties are chosen as the metric chooses
  them (inner K-fold CV, ``solve_ridge_cv``) on detached features: the choice is piecewise
  constant in the features, so the gradient with the penalties held fixed is the exact gradient
  almost everywhere, and the value equals ``ridge(...).value``.

All take float64 (or float32) tensors and return a 0-d tensor (higher is more aligned); a
training loss is its negative.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from sklearn.model_selection import KFold

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics._cka import CKA_KINDS
from cortexalign.metrics._encoding import DEFAULT_ALPHAS
from cortexalign.metrics._ridge import check_alphas, solve_ridge_cv
from cortexalign.metrics._rsa_metric import _neural_vectors, ceiling_groups
from cortexalign.rdm import (
    RDM_METHODS,
    average_ranks,
    compare_pearson,
    rdm_tensor,
    soft_rank,
    upper_tri,
)
from cortexalign.stats import group_weights

__all__ = ["OBJECTIVES", "rsa_objective", "cka_objective", "ridge_objective"]

OBJECTIVE_COMPARISONS = ("pearson", "spearman")
OBJECTIVE_CKA_KINDS = ("linear", "linear_debiased")


def _features(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise InputError(name, "a floating (s, d) torch tensor (flatten the layer's output)",
                         f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}",
                         "pass features.flatten(1) of the stimuli, in the target's order")
    if x.shape[0] < 4:
        raise InputError(name, "at least 4 stimuli", f"{x.shape[0]}", "use more stimuli")
    return x


def _rdm_weights(target, s: int, method: str, device: torch.device, ceiling_by: str | None):
    """(k, p) target vectors and the (k,) weights ``rsa`` averages them with."""
    target_kp, source = _neural_vectors(target, s, method, device)
    groups, _ = ceiling_groups(source, ceiling_by, target_kp.shape[0])
    return target_kp, torch.as_tensor(group_weights(groups), device=device)


def rsa_objective(features_sd: torch.Tensor, target, *, rdm_method: str = "correlation",
                  compare: str = "pearson", strength: float = 1.0,
                  neural_rdm_method: str | None = None,
                  ceiling_by: str | None = "subject") -> torch.Tensor:
    """RSA between model features and a neural target, differentiable in the features.

    Parameters
    ----------
    features_sd : (s, d) tensor, rows in the target's stimulus order.
    target : an ``RDMSet`` or a responses ``DataArray`` over the same s stimuli (constants).
    rdm_method : the model RDM (``correlation``, ``euclidean``, ``cosine``), as in ``rsa``.
    compare : ``pearson`` or ``spearman`` (soft ranks of the model's dissimilarities).
    strength : soft-rank temperature for ``spearman`` in rank units (module docstring): 1.0
        pools neighbouring dissimilarities about one rank apart; -> 0 gives the hard ranks.
    neural_rdm_method, ceiling_by : as in ``rsa``.

    Returns
    -------
    0-d tensor: the weighted mean comparison, ``rsa``'s value (see the module docstring).
    """
    if compare not in OBJECTIVE_COMPARISONS:
        raise UnknownNameError("differentiable RDM comparison", str(compare),
                               OBJECTIVE_COMPARISONS)
    if rdm_method not in RDM_METHODS or rdm_method == "crossnobis":
        raise UnknownNameError("model RDM method", str(rdm_method),
                               [m for m in RDM_METHODS if m != "crossnobis"])
    x = _features(features_sd, "features_sd")
    target_kp, weights_k = _rdm_weights(target, x.shape[0], neural_rdm_method or rdm_method,
                                        x.device, ceiling_by)
    model_p = upper_tri(rdm_tensor(x.to(torch.float64), rdm_method))
    if compare == "spearman":
        p = model_p.shape[0]
        z_p = (model_p - model_p.mean()) / model_p.std() * (p / 12**0.5)
        model_p, target_kp = soft_rank(z_p, strength), average_ranks(target_kp)
    return compare_pearson(model_p[None], target_kp)[0] @ weights_k


def cka_objective(features_sd: torch.Tensor, target, *, kind: str = "linear") -> torch.Tensor:
    """Linear or debiased linear CKA between features and responses, differentiable.

    Parameters
    ----------
    features_sd : (s, d) tensor; target : (s, n) responses (tensor, array or a responses
        ``DataArray``, repetitions averaged) in the same stimulus order.
    kind : ``linear`` or ``linear_debiased`` (``CKA_KINDS``).

    Returns
    -------
    0-d tensor equal to ``cka(features_sd, target, kind)``.
    """
    if kind not in OBJECTIVE_CKA_KINDS:
        raise UnknownNameError("differentiable CKA kind", str(kind), OBJECTIVE_CKA_KINDS)
    x = _features(features_sd, "features_sd").to(torch.float64)
    y = _responses(target, x.shape[0], x.device)
    return CKA_KINDS[kind](x, y)


def _responses(target, s: int, device: torch.device) -> torch.Tensor:
    if isinstance(target, xr.DataArray):
        v = target.values
        target = v.mean(axis=2) if v.ndim == 3 else v
    y = torch.as_tensor(target, dtype=torch.float64, device=device)
    if y.ndim != 2 or y.shape[0] != s:
        raise InputError("target", f"({s}, n) responses, one row per stimulus",
                         f"shape {tuple(y.shape)}", "pass responses in the features' order")
    return y.detach()


def _fold_predictions(x_sd: torch.Tensor, y_sn: torch.Tensor, tr, te, alpha_n: torch.Tensor):
    """Ridge with an intercept on rows ``tr``, predicting rows ``te``, in the graph: kernel form
    ``K_te,tr (K_tr + a I)^-1 (y - mu) + mu`` with centred features, one solve per distinct
    penalty."""
    mean_d = x_sd[tr].mean(0)
    xtr, xte = x_sd[tr] - mean_d, x_sd[te] - mean_d
    ytr = y_sn[tr]
    mu_n = ytr.mean(0)
    k_tt, k_et = xtr @ xtr.T, xte @ xtr.T
    eye = torch.eye(len(tr), dtype=x_sd.dtype, device=x_sd.device)
    pred = torch.empty(len(te), y_sn.shape[1], dtype=x_sd.dtype, device=x_sd.device)
    cols = []
    for a in torch.unique(alpha_n):
        idx = torch.nonzero(alpha_n == a).flatten()
        coef = torch.linalg.solve(k_tt + a * eye, ytr[:, idx] - mu_n[idx])
        cols.append((idx, k_et @ coef + mu_n[idx]))
    for idx, p in cols:
        pred = pred.index_copy(1, idx, p)
    return pred


def _pearson_columns(y_sn: torch.Tensor, pred_sn: torch.Tensor) -> torch.Tensor:
    yc, pc = y_sn - y_sn.mean(0), pred_sn - pred_sn.mean(0)
    return (yc * pc).sum(0) / torch.sqrt((yc * yc).sum(0) * (pc * pc).sum(0))


def _median(v_n: torch.Tensor) -> torch.Tensor:
    """numpy's median (mean of the two middle values for an even count), differentiable."""
    sorted_n = torch.sort(v_n).values
    n = len(sorted_n)
    return sorted_n[n // 2] if n % 2 else 0.5 * (sorted_n[n // 2 - 1] + sorted_n[n // 2])


def ridge_objective(features_sd: torch.Tensor, target, *, alphas=DEFAULT_ALPHAS,
                    n_folds: int = 5, inner_folds: int = 5, seed: int = 0) -> torch.Tensor:
    """The ``ridge`` encoding metric's value, differentiable in the features.

    Parameters
    ----------
    features_sd : (s, d) tensor; target : (s, n) responses (tensor, array or ``DataArray``).
    alphas, n_folds, inner_folds, seed : as in ``ridge`` (same folds, same penalty choice).

    Returns
    -------
    0-d tensor: median over neuroids of the held-out Pearson r (``ridge(...).value``).
    """
    x = _features(features_sd, "features_sd").to(torch.float64)
    y = _responses(target, x.shape[0], x.device)
    alpha_a = check_alphas(alphas)
    s = x.shape[0]
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or not 2 <= n_folds <= s:
        raise InputError("n_folds", f"an int in 2..{s} (the number of stimuli)", repr(n_folds),
                         "e.g. n_folds=5")
    pred = torch.zeros_like(y)
    folds = KFold(n_folds, shuffle=True, random_state=seed).split(np.arange(s))
    for fold, (tr, te) in enumerate(folds):
        tr_i = torch.as_tensor(tr, device=x.device)
        te_i = torch.as_tensor(te, device=x.device)
        with torch.no_grad():  # the penalty choice: the metric's, on the detached features
            alpha_n = solve_ridge_cv(x.detach()[tr_i], y[tr_i], x.detach()[te_i], alpha_a,
                                     inner_folds=inner_folds, seed=seed + fold).alpha_n
        pred = pred.index_copy(0, te_i, _fold_predictions(x, y, tr_i, te_i, alpha_n))
    return _median(_pearson_columns(y, pred))


OBJECTIVES = {"rsa": rsa_objective, "cka": cka_objective, "ridge": ridge_objective}
"""Name -> ``fn(features_sd, target, **options) -> 0-d tensor`` (higher is more aligned)."""
