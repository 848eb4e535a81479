"""The ridge solvers of the ``ridge`` metric's outer folds, by name (``RIDGE_SOLVERS``).

``eigh`` (default) fits a ``RidgeEncoder`` (``_ridge.solve_ridge_cv``: Gram eigendecomposition in
torch, on the device) and predicts the held-out rows; ``himalaya`` calls himalaya's
``solve_ridge_cv_svd`` in float64 (an SVD per inner fold): the reference, and the choice for those
who want himalaya's own numbers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.model_selection import KFold

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics._estimators import RidgeEncoder
from cortexalign.metrics._ridge import _check, _target_chunk, ridge_dtype

__all__ = ["RIDGE_SOLVERS", "check_solver_options", "himalaya_backend"]


@contextmanager
def himalaya_backend(device: torch.device) -> Iterator[object]:
    """Switch himalaya to ``torch`` (CPU) or ``torch_cuda`` and restore the previous backend."""
    from himalaya.backend import get_backend, set_backend

    previous = get_backend().name
    backend = set_backend("torch_cuda" if device.type == "cuda" else "torch")
    try:
        yield backend
    finally:
        set_backend(previous)


def _fold_eigh(x_tr, y_tr, x_te, *, device, seed, alphas, inner_folds, dtype=torch.float64,
               target_chunk=None):
    """One outer fold with a ``RidgeEncoder`` (``solve_ridge_cv``) fitted on the training rows:
    numpy or device tensors in, (pred (t, n), alphas (n,)) numpy out."""
    enc = RidgeEncoder(alphas=alphas, inner_folds=inner_folds, random_state=seed, device=device,
                       dtype=dtype, target_chunk=target_chunk)
    enc.fit(torch.as_tensor(x_tr, device=device), torch.as_tensor(y_tr, device=device))
    pred = enc.predict(torch.as_tensor(x_te, device=device))
    return pred.cpu().numpy(), enc.alpha_


def _fold_himalaya(x_tr, y_tr, x_te, *, device, seed, alphas, inner_folds):
    """One outer fold with himalaya's ``solve_ridge_cv_svd`` in float64 (SVD per inner fold)."""
    from himalaya.ridge import solve_ridge_cv_svd

    _check(torch.as_tensor(x_tr), torch.as_tensor(y_tr), torch.as_tensor(x_te), alphas,
           inner_folds, None, "auto")
    with himalaya_backend(device) as bk:
        X = torch.as_tensor(x_tr, dtype=torch.float64, device=device)
        Y = torch.as_tensor(y_tr, dtype=torch.float64, device=device)
        a = torch.as_tensor(np.asarray(alphas, dtype=np.float64).reshape(-1), device=device)
        cv = KFold(int(inner_folds), shuffle=True, random_state=seed)
        best, coefs, _, intercept = solve_ridge_cv_svd(X, Y, alphas=a, fit_intercept=True, cv=cv,
                                                       local_alpha=True, warn=False)
        Xte = torch.as_tensor(x_te, dtype=torch.float64, device=device)
        # himalaya returns the intercept on the CPU (to_cpu): bring it to the predictions' device
        pred = Xte @ bk.to_gpu(coefs, device=device) + bk.to_gpu(intercept, device=device)
        return bk.to_numpy(pred), bk.to_numpy(best)


RIDGE_SOLVERS: dict[str, Callable] = {"eigh": _fold_eigh, "himalaya": _fold_himalaya}
"""``f(x_tr, y_tr, x_te, *, device, seed, alphas, inner_folds, **own options) -> (pred (t, n),
alphas (n,))``; the keyword-only parameters after ``device`` and ``seed`` are the options the
solver takes (``check_solver_options``)."""

_CONTEXT = ("device", "seed")  # every solver gets them from the encoder; not user options
_OPTION_VALUES: dict[str, Callable] = {"dtype": ridge_dtype, "target_chunk": _target_chunk}


def _takes(fn: Callable) -> list[str]:
    return [n for n, p in inspect.signature(fn).parameters.items()
            if p.kind is p.KEYWORD_ONLY and n not in _CONTEXT]


def check_solver_options(solver: str, options: dict) -> dict:
    """``options`` for ``RIDGE_SOLVERS[solver]``, with ``dtype``/``target_chunk`` checked and
    normalised; an option the solver does not take (``dtype`` with "himalaya", which always
    computes in float64) raises an ``InputError`` naming it, the solver, what the solver takes
    and which solver takes the option."""
    if solver not in RIDGE_SOLVERS:
        raise UnknownNameError("ridge solver", solver, RIDGE_SOLVERS)
    takes = _takes(RIDGE_SOLVERS[solver])
    unknown = sorted(set(options) - set(takes))
    if unknown:
        name = unknown[0]
        others = [s for s, fn in RIDGE_SOLVERS.items() if name in _takes(fn)]
        raise InputError(name, f"an option of ridge solver {solver!r}: {', '.join(takes)}",
                         f"{name}={options[name]!r} with solver={solver!r}",
                         f"leave {name} unset with solver={solver!r}" + (
                             f", or use solver={' or '.join(map(repr, others))}, which takes it"
                             if others else f" (no ridge solver takes it: "
                                            f"{', '.join(RIDGE_SOLVERS)})"))
    return {k: _OPTION_VALUES[k](v) if k in _OPTION_VALUES else v for k, v in options.items()}
