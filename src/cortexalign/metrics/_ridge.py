"""Ridge regression with one penalty per target chosen by inner K-fold CV, on any torch device.

``solve_ridge_cv`` fits, on training stimuli ``x_sd``/``y_sn``, a ridge with an intercept for every
target, chooses each target's penalty from a grid by the mean over inner folds of the validation
MSE, refits on all training stimuli with that penalty and predicts ``x_td``. It makes the same
choices as himalaya's ``solve_ridge_cv_svd(..., fit_intercept=True, local_alpha=True)`` (Dupre la
Tour et al. 2022, NeuroImage 264:119728): score ``-sum((y - pred)**2) / n_val`` per inner fold,
mean over folds in float64, ``+ 1e-10 * log(alpha)`` so that exact ties go to the larger penalty,
first maximum; the inner splits are scikit-learn's ``KFold(inner_folds, shuffle=True,
random_state=seed)``.

How it differs from himalaya: no SVD of the (s, d) training matrix per inner fold. When s < d
("kernel" route) the only products with the features are one Gram matrix of the training rows and
one cross Gram of the test rows per call; every inner fold's centred Gram is derived from them and
eigendecomposed (``torch.linalg.eigh``, s x s). When d <= s ("primal" route) each fold
eigendecomposes the d x d scatter matrix. In both routes a prediction for penalty ``a`` is
``a_vr @ diag(1 / (lam_r + a)) @ b_rs @ y_s``, so the per-target work is matrix products over
chunks of targets and never leaves the device.

Precision: features, Grams and eigendecompositions are always float64 (small eigenvalues decide
the predictions at small penalties); ``dtype`` is the precision of the products with the targets,
float64 by default. The validation errors are always summed in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import KFold

from cortexalign.errors import InputError, UnknownNameError

__all__ = ["RIDGE_ROUTES", "RIDGE_DTYPES", "RidgeCVFit", "check_alphas", "ridge_dtype",
           "solve_ridge_cv"]

TIE_SLOPE = 1e-10  # himalaya's tie-break: score + 1e-10 * log(alpha)
CHUNK_ELEMENTS = 2**25  # default bound on the (alphas, validation rows, targets) block per chunk
RIDGE_DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""Precisions of the products with the targets (``solve_ridge_cv``'s ``dtype``), by name."""


def ridge_dtype(dtype) -> torch.dtype:
    """``RIDGE_DTYPES`` entry of a name ("float32"), a torch dtype or a numpy dtype (YAML configs
    give names, Python callers often torch dtypes)."""
    try:
        name = (str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype)
                else None if dtype is None or isinstance(dtype, bool) else np.dtype(dtype).name)
    except (TypeError, ValueError):
        name = None
    if name not in RIDGE_DTYPES:
        raise InputError("dtype", "'float32' or 'float64' (a name, a torch or a numpy dtype)",
                         repr(dtype), "float64 (the default) matches himalaya to rounding; "
                         "float32 halves the memory of the target products, faster on GPUs")
    return RIDGE_DTYPES[name]


def _target_chunk(target_chunk) -> int | None:
    if target_chunk is None:
        return None
    if isinstance(target_chunk, bool) or not isinstance(target_chunk, (int, np.integer)) \
            or target_chunk < 1:
        raise InputError("target_chunk", "None or a positive int", repr(target_chunk),
                         "leave it None for a memory-bounded default (about 2**25 / (alphas x "
                         "validation rows) targets)")
    return int(target_chunk)


@dataclass(frozen=True)
class RidgeCVFit:
    """Result of ``solve_ridge_cv``; tensors on the input's device.

    pred_td : (t, n) float64 predictions of the test rows; without test rows (``x_td=None``) the
        (d, n) float64 coefficients of the refit on all training rows.
    alpha_n : (n,) float64 penalty chosen for each target.
    cv_mse_n : (n,) float64 mean inner validation MSE at the chosen penalty.
    intercept_n : (n,) float64 intercepts of the refit (``x_td=None`` only, else None).
    """

    pred_td: torch.Tensor
    alpha_n: torch.Tensor
    cv_mse_n: torch.Tensor
    intercept_n: torch.Tensor | None = None


@dataclass(frozen=True)
class _Basis:
    """A ridge problem diagonalised: ``pred(a) = a_vr @ diag(1 / (lam_r + a)) @ b_rs @ y_s``."""

    a_vr: torch.Tensor
    b_rs: torch.Tensor
    lam_r: torch.Tensor  # float64, clamped at 0 (rounding can make tiny eigenvalues negative)


def _eigh_basis(m_rr: torch.Tensor, a_vr: torch.Tensor, b_rs: torch.Tensor | None,
                dtype: torch.dtype) -> _Basis:
    """Diagonalise ``m_rr``; ``b_rs`` None stands for the identity (kernel route)."""
    lam_r, q_rr = torch.linalg.eigh(m_rr)
    b_rs = q_rr.T if b_rs is None else q_rr.T @ b_rs
    return _Basis((a_vr @ q_rr).to(dtype), b_rs.to(dtype), lam_r.clamp_min(0.0))


def _inner_kernel_bases(g_ss: torch.Tensor, splits, dtype) -> list[_Basis]:
    """Inner-fold bases of one (s, s) training-centred Gram or kernel, each fold's kernel
    re-centred on its own training rows (the intercept); shared with ``_banded``."""
    inner = []
    for tr, va in splits:
        m_s = g_ss[:, tr].mean(1)  # <x_i, mean of the inner training rows>
        c = m_s[tr].mean()
        k_ss = g_ss[tr][:, tr] - m_s[tr, None] - m_s[None, tr] + c
        k_vs = g_ss[va][:, tr] - m_s[va, None] - m_s[None, tr] + c
        inner.append(_eigh_basis(k_ss, k_vs, None, dtype))
    return inner


def _kernel_bases(x_sd, x_td, splits, dtype) -> tuple[list[_Basis], _Basis]:
    """Kernel route (s < d): Grams of the centred training rows, inner centring done on them."""
    g_ss = x_sd @ x_sd.T
    a_vs = x_sd.T if x_td is None else x_td @ x_sd.T  # None: the coefficients, w = X^T (K + a)^-1 y
    return _inner_kernel_bases(g_ss, splits, dtype), _eigh_basis(g_ss, a_vs, None, dtype)


def _primal_bases(x_sd, x_td, splits, dtype) -> tuple[list[_Basis], _Basis]:
    """Primal route (d <= s): eigendecomposition of the d x d scatter of each training set."""
    inner = []
    for tr, va in splits:
        mean_d = x_sd[tr].mean(0)
        xtr, xva = x_sd[tr] - mean_d, x_sd[va] - mean_d
        inner.append(_eigh_basis(xtr.T @ xtr, xva, xtr.T, dtype))
    a_vd = torch.eye(x_sd.shape[1], dtype=x_sd.dtype, device=x_sd.device) if x_td is None else x_td
    return inner, _eigh_basis(x_sd.T @ x_sd, a_vd, x_sd.T, dtype)  # None: the coefficients


RIDGE_ROUTES: dict[str, Callable] = {"kernel": _kernel_bases, "primal": _primal_bases}
"""``f(x_sd, x_td, inner splits, dtype) -> (inner bases, refit basis)``; inputs centred, float64;
``x_td`` None: the refit basis gives the coefficients instead of test predictions."""


def _fold_predictors(inner: list[_Basis], alpha_a: torch.Tensor, dtype) -> list[torch.Tensor]:
    """(a, v, r) prediction matrices ``a_vr / (lam_r + alpha)`` of each inner fold, shared by
    every chunk of targets."""
    return [b.a_vr[None] / (b.lam_r[None, None] + alpha_a[:, None, None]).to(dtype) for b in inner]


def _inner_mse(inner: list[_Basis], w_f_avr: list[torch.Tensor], splits, y64: torch.Tensor,
               dtype) -> torch.Tensor:
    """(a, n) validation MSE of float64 targets ``y64`` (s, n) for every penalty, mean over the
    inner folds (each fold centres the targets on its training rows); summed in float64."""
    mse_an = torch.zeros(len(w_f_avr[0]), y64.shape[1], dtype=torch.float64, device=y64.device)
    for basis, w_avr, (tr, va) in zip(inner, w_f_avr, splits, strict=True):
        mu_n = y64[tr].mean(0)
        z_rn = basis.b_rs @ (y64[tr] - mu_n).to(dtype)
        res_avn = (y64[va] - mu_n).to(dtype)[None] - w_avr @ z_rn
        mse_an += res_avn.square().sum(1, dtype=torch.float64) / len(va)
    return mse_an.div_(len(splits))


def check_alphas(alphas) -> np.ndarray:
    """The penalty grid as a flat float64 array; ``InputError`` unless it is non-empty, numeric,
    finite and > 0."""
    try:
        alpha_a = np.asarray(alphas, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError("alphas", "a non-empty grid of finite penalties > 0", repr(alphas),
                         "e.g. alphas=np.logspace(-3, 7, 11)") from None
    if alpha_a.size == 0 or not (np.isfinite(alpha_a).all() and (alpha_a > 0).all()):
        raise InputError("alphas", "a non-empty grid of finite penalties > 0",
                         f"{alpha_a.size} value(s), min {alpha_a.min() if alpha_a.size else 'n/a'}",
                         "e.g. alphas=np.logspace(-3, 7, 11)")
    return alpha_a


def _check(x_sd, y_sn, x_td, alphas, inner_folds, target_chunk, route) -> torch.Tensor:
    x_td = x_sd[:0] if x_td is None else x_td
    if x_sd.ndim != 2 or y_sn.ndim != 2 or x_td.ndim != 2:
        raise InputError("x_sd, y_sn, x_td", "2-D (stimuli, features/targets) tensors",
                         f"shapes {tuple(x_sd.shape)}, {tuple(y_sn.shape)}, {tuple(x_td.shape)}",
                         "reshape to (stimuli, features) and (stimuli, targets)")
    if len(x_sd) != len(y_sn) or x_sd.shape[1] != x_td.shape[1]:
        raise InputError("y_sn", f"{len(x_sd)} rows and x_td with {x_sd.shape[1]} columns",
                         f"{len(y_sn)} rows, x_td with {x_td.shape[1]} columns",
                         "pass the training features and targets of the same stimuli")
    alpha_a = torch.as_tensor(check_alphas(alphas))
    if isinstance(inner_folds, bool) or not isinstance(inner_folds, (int, np.integer)) \
            or not 2 <= int(inner_folds) <= len(x_sd):
        raise InputError("inner_folds", f"an int in 2..{len(x_sd)} (the training stimuli)",
                         repr(inner_folds), "lower inner_folds or add training stimuli")
    _target_chunk(target_chunk)
    if route not in ("auto", *RIDGE_ROUTES):
        raise UnknownNameError("ridge route", route, ["auto", *RIDGE_ROUTES])
    return alpha_a


def solve_ridge_cv(x_sd: torch.Tensor, y_sn: torch.Tensor, x_td: torch.Tensor | None, alphas, *,
                   inner_folds: int = 5, seed: int = 0, dtype: torch.dtype | str = torch.float64,
                   target_chunk: int | None = None, route: str = "auto") -> RidgeCVFit:
    """Ridge with an intercept and a penalty per target chosen by inner K-fold CV.

    Parameters
    ----------
    x_sd : (s, d) training features. y_sn : (s, n) training targets. x_td : (t, d) test features,
        or None for the coefficients and intercepts of the refit instead (``RidgeEncoder``).
        All on one device; the work stays there.
    alphas : (a,) penalty grid, every value finite and > 0.
    inner_folds, seed : inner ``KFold(inner_folds, shuffle=True, random_state=seed)`` on the s rows.
    dtype : precision of the products with the targets (Grams and eigh are always float64):
        a ``RIDGE_DTYPES`` name or a torch/numpy dtype.
    target_chunk : targets processed at once (default: about 2**25 / (a * validation rows)).
    route : "kernel" (Gram, s x s eigh), "primal" (d x d eigh) or "auto" (kernel when s < d).

    Returns
    -------
    RidgeCVFit with ``pred_td`` (t, n), ``alpha_n`` (n,), ``cv_mse_n`` (n,), all float64.
    """
    dtype = ridge_dtype(dtype)
    alpha_a = _check(x_sd, y_sn, x_td, alphas, inner_folds, target_chunk, route)
    dev = x_sd.device
    alpha_a = alpha_a.to(dev)
    x64 = x_sd.to(torch.float64)
    mean_d = x64.mean(0)
    x64 = x64 - mean_d
    xt64 = None if x_td is None else x_td.to(device=dev, dtype=torch.float64) - mean_d
    splits = [(torch.as_tensor(tr, device=dev), torch.as_tensor(va, device=dev)) for tr, va in
              KFold(int(inner_folds), shuffle=True, random_state=seed).split(np.arange(len(x64)))]
    route = route if route != "auto" else ("kernel" if x64.shape[0] < x64.shape[1] else "primal")
    inner, full = RIDGE_ROUTES[route](x64, xt64, splits, dtype)
    n_val = max(len(va) for _, va in splits)
    n_out = len(full.a_vr)  # test rows, or features for the coefficients
    chunk = int(target_chunk or max(1, CHUNK_ELEMENTS // (len(alpha_a) * max(n_val, n_out))))
    tie_a1 = TIE_SLOPE * torch.log(alpha_a)[:, None]
    w_f_avr = _fold_predictors(inner, alpha_a, dtype)
    pred, best, mse, icpt = [], [], [], []
    for start in range(0, y_sn.shape[1], chunk):
        y64 = y_sn[:, start:start + chunk].to(device=dev, dtype=torch.float64)
        mse_an = _inner_mse(inner, w_f_avr, splits, y64, dtype)
        idx_n = (tie_a1 - mse_an).argmax(0)
        alpha_n = alpha_a[idx_n]
        mu_n = y64.mean(0)
        z_rn = full.b_rs @ (y64 - mu_n).to(dtype)
        z_rn = z_rn / (full.lam_r[:, None] + alpha_n[None]).to(dtype)
        out_vn = (full.a_vr @ z_rn).to(torch.float64)
        if xt64 is None:  # coefficients of centred features; the intercept restores the means
            pred.append(out_vn)
            icpt.append(mu_n - mean_d @ out_vn)
        else:
            pred.append(out_vn + mu_n)
        best.append(alpha_n)
        mse.append(mse_an.gather(0, idx_n[None])[0])
    return RidgeCVFit(torch.cat(pred, 1), torch.cat(best), torch.cat(mse),
                      torch.cat(icpt) if icpt else None)
