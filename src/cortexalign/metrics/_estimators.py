"""Encoding models as scikit-learn estimators: fit once, predict new stimuli.

``RidgeEncoder`` is ridge regression with an intercept and one penalty per target chosen by
inner K-fold CV (``solve_ridge_cv``: himalaya's ``RidgeCV`` with ``local_alpha``, on any torch
device). ``PLSEncoder`` is partial least squares (scikit-learn's ``PLSRegression``, unscaled, as
Brain-Score) with the number of components capped by the training data. Both follow the
scikit-learn contract: parameters in ``__init__`` (``get_params``/``set_params``), ``fit(X, y)``
returns the estimator, learned attributes end in ``_``, ``predict(X)``, ``score(X, y)`` (R^2
averaged over targets). The ``ridge`` and ``pls`` metrics fit them on each outer fold.

>>> enc = RidgeEncoder(alphas=np.logspace(-2, 4, 13)).fit(x_train, y_train)  # doctest: +SKIP
>>> enc.alpha_, enc.coef_.shape              # (n_targets,), (n_targets, n_features)  # doctest: +SKIP
>>> enc.predict(x_new)                       # (n_new, n_targets)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.cross_decomposition import PLSRegression
from sklearn.utils.validation import check_is_fitted, validate_data

from cortexalign.device import resolve_device
from cortexalign.errors import InputError
from cortexalign.metrics._ridge import solve_ridge_cv

__all__ = ["RidgeEncoder", "PLSEncoder", "DEFAULT_ALPHAS"]

DEFAULT_ALPHAS = np.logspace(-3, 7, 21)
"""The ridge penalty grid of the ``ridge`` metric and ``RidgeEncoder``."""


def _as_2d_targets(y: np.ndarray) -> np.ndarray:
    return y[:, None] if y.ndim == 1 else y


def _tensor(x: np.ndarray, device) -> torch.Tensor:
    """A float64 tensor of ``x`` (read-only arrays are copied: torch cannot wrap them safely)."""
    return torch.as_tensor(x if x.flags.writeable else x.copy(), device=device)


class _MultiOutput:
    """scikit-learn tags: one target or several."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        return tags


class RidgeEncoder(_MultiOutput, RegressorMixin, BaseEstimator):
    """Ridge regression with a penalty per target chosen by inner cross-validation.

    Parameters
    ----------
    alphas : the penalty grid (finite, > 0); default ``DEFAULT_ALPHAS`` (1e-3 .. 1e7).
    inner_folds : folds of the inner ``KFold(inner_folds, shuffle=True,
        random_state=random_state)`` that choose each target's penalty.
    random_state : seed of the inner folds.
    device : where to fit (``None``: CUDA when present, else the CPU).
    dtype : precision of the products with the targets (``float64`` or ``float32``; Grams and
        eigendecompositions are always float64).
    target_chunk : targets processed at once (default: bounded memory).

    Attributes
    ----------
    coef_ : (n_targets, n_features) float64 coefficients ((n_features,) for a 1-D ``y``).
    intercept_ : (n_targets,) float64 intercepts (a float for a 1-D ``y``).
    alpha_ : (n_targets,) the penalty chosen for each target.
    cv_mse_ : (n_targets,) the mean inner validation MSE at that penalty.
    n_features_in_ : number of features seen in ``fit``.
    """

    def __init__(self, alphas=None, inner_folds: int = 5, random_state: int = 0, device=None,
                 dtype: str = "float64", target_chunk: int | None = None):
        self.alphas = alphas
        self.inner_folds = inner_folds
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.target_chunk = target_chunk

    def fit(self, X, y) -> RidgeEncoder:
        """Choose each target's penalty by inner CV, then refit on all of ``X``, ``y``.

        ``X``: (n_samples, n_features); ``y``: (n_samples,) or (n_samples, n_targets). NumPy
        arrays, or torch tensors (kept on their device: no host copy of the data).
        """
        dev = resolve_device(self.device) if not isinstance(X, torch.Tensor) else X.device
        if isinstance(X, torch.Tensor) and isinstance(y, torch.Tensor):
            x_sd, y_sn, one_d = X, _as_2d_targets(y), y.ndim == 1
            self.n_features_in_ = int(X.shape[1])
        else:
            X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                                 dtype=np.float64)
            one_d = y.ndim == 1
            x_sd = _tensor(X, dev)
            y_sn = _tensor(_as_2d_targets(np.asarray(y, dtype=np.float64)), dev)
        if len(x_sd) < 2:
            raise InputError("X", "at least 2 samples (stimuli)", f"n_samples = {len(x_sd)}",
                             "fit on more stimuli")
        alphas = DEFAULT_ALPHAS if self.alphas is None else self.alphas
        fit = solve_ridge_cv(x_sd, y_sn, None, alphas, inner_folds=self.inner_folds,
                             seed=self.random_state, dtype=self.dtype,
                             target_chunk=self.target_chunk)
        coef = fit.pred_td.T.cpu().numpy()
        intercept = fit.intercept_n.cpu().numpy()
        self.coef_ = coef[0] if one_d else coef
        self.intercept_ = float(intercept[0]) if one_d else intercept
        self.alpha_ = fit.alpha_n.cpu().numpy()
        self.cv_mse_ = fit.cv_mse_n.cpu().numpy()
        return self

    def predict(self, X):
        """Predictions for ``X`` (n_samples, n_features): (n_samples, n_targets), or
        (n_samples,) after a fit on a 1-D ``y``; a torch tensor for a tensor ``X`` (same device)."""
        check_is_fitted(self)
        if isinstance(X, torch.Tensor):
            coef = torch.as_tensor(self.coef_, device=X.device)
            return X.to(torch.float64) @ coef.T + torch.as_tensor(self.intercept_,
                                                                 device=X.device)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ np.asarray(self.coef_).T + self.intercept_



class PLSEncoder(_MultiOutput, RegressorMixin, BaseEstimator):
    """Partial least squares regression (unscaled), the ``pls`` metric's encoder.

    Parameters
    ----------
    n_components : components wanted (Brain-Score: 25); capped at ``n_samples - 1`` and
        ``n_features`` in ``fit`` (``n_components_`` says how many were used).

    Attributes
    ----------
    coef_ : (n_targets, n_features) coefficients. intercept_ : (n_targets,) intercepts.
    n_components_ : components used. pls_ : the fitted ``sklearn`` ``PLSRegression``.
    n_features_in_ : number of features seen in ``fit``.
    """

    def __init__(self, n_components: int = 25):
        self.n_components = n_components

    def fit(self, X, y) -> PLSEncoder:
        """Fit on ``X`` (n_samples, n_features) and ``y`` (n_samples[, n_targets])."""
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        self.n_components_ = int(max(1, min(self.n_components, X.shape[0] - 1, X.shape[1])))
        self.pls_ = PLSRegression(n_components=self.n_components_, scale=False).fit(X, y)
        self.coef_ = self.pls_.coef_[0] if np.ndim(y) == 1 else self.pls_.coef_
        self.intercept_ = self.pls_.intercept_[0] if np.ndim(y) == 1 else self.pls_.intercept_
        self._one_d = np.ndim(y) == 1
        return self

    def predict(self, X) -> np.ndarray:
        """Predictions for ``X``: (n_samples, n_targets), or (n_samples,) after a 1-D ``y``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        pred = self.pls_.predict(X)
        return pred.reshape(len(X), -1)[:, 0] if self._one_d else pred.reshape(len(X), -1)
