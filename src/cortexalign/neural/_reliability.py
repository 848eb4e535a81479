"""Split-half reliability of each neuroid over repetitions, Spearman-Brown corrected.

For each of ``n_splits`` random splits, every stimulus's repetitions are shuffled independently and
cut in two halves; each half is averaged (NaN-padded repetitions ignored) and the two (s,) half
means of a neuroid are correlated across stimuli (Pearson). The split correlations are averaged
and stepped up to the full number of repetitions with the Spearman-Brown formula
``rho = 2 r / (1 + r)`` (Spearman 1910; Brown 1910), as in Brain-Score's internal consistency.
Results are kept per input (``cortexalign.memo``): a grid asks for the same group's
reliabilities once per layer.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from cortexalign.errors import InputError
from cortexalign.memo import Memo, array_digest

__all__ = ["split_half_reliability", "spearman_brown", "masked_pearson"]


def spearman_brown(r: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """Reliability of a test ``factor`` times as long: ``factor r / (1 + (factor - 1) r)``."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return factor * r / (1.0 + (factor - 1.0) * r)


def masked_pearson(a_sn: np.ndarray, b_sn: np.ndarray) -> np.ndarray:
    """(n,) Pearson r between columns of ``a`` and ``b`` over the rows where both are finite."""
    ok = np.isfinite(a_sn) & np.isfinite(b_sn)
    cnt = ok.sum(0)
    a = np.where(ok, a_sn, 0.0)
    b = np.where(ok, b_sn, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(ok, a - a.sum(0) / cnt, 0.0)
        b = np.where(ok, b - b.sum(0) / cnt, 0.0)
        r = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return np.where(cnt >= 3, r, np.nan)


def split_half_reliability(responses: xr.DataArray | np.ndarray, n_splits: int = 100,
                           seed: int = 0, corrected: bool = True) -> np.ndarray:
    """Per-neuroid split-half reliability.

    Parameters
    ----------
    responses : (s, n, r) array or a DataArray with dims (stimulus, neuroid, repetition);
        NaN marks a missing repetition.
    n_splits : random splits averaged (seeded by ``seed``).
    corrected : apply the Spearman-Brown step-up to the full repetition count.

    Returns
    -------
    (n,) reliabilities; NaN for a neuroid that is constant within a half or has < 3 stimuli.
    """
    if isinstance(responses, xr.DataArray):
        if "repetition" not in responses.dims:
            raise InputError("responses", "data with a repetition dim", f"dims {responses.dims}",
                             "load the trial-resolved responses (before averaging repetitions)")
        values = responses.transpose("stimulus", "neuroid", "repetition").values
    else:
        values = np.asarray(responses, dtype=np.float64)
    if values.ndim != 3 or values.shape[2] < 2:
        raise InputError("responses", "an (s, n, r) array with r >= 2 repetitions",
                         f"shape {values.shape}", "reliability needs at least two repetitions")
    if int(n_splits) < 1:
        raise InputError("n_splits", "a positive integer", repr(n_splits), "e.g. n_splits=100")
    values = values.astype(np.float64)
    key = ("split_half", array_digest(values), int(n_splits), int(seed), bool(corrected))
    # a grid scores every layer against the same groups: the same reliabilities each time
    return _MEMO.get(key, lambda: _split_half(values, n_splits, seed, corrected)).copy()


_MEMO = Memo(2**24)


def _split_half(values: np.ndarray, n_splits: int, seed: int, corrected: bool) -> np.ndarray:
    s, n, r = values.shape
    rng = np.random.default_rng(seed)
    half = r // 2
    total = np.zeros(n)
    with np.errstate(invalid="ignore"):
        for _ in range(int(n_splits)):
            # independent shuffles per stimulus; NaN padding falls into either half at random
            order_sr = np.argsort(rng.random((s, r)), axis=1)
            shuffled = np.take_along_axis(values, order_sr[:, None, :], axis=2)
            a_sn = _nanmean(shuffled[:, :, :half])
            b_sn = _nanmean(shuffled[:, :, half:])
            total += masked_pearson(a_sn, b_sn)
    r_mean = total / int(n_splits)
    return spearman_brown(r_mean) if corrected else r_mean


def _nanmean(x_snr: np.ndarray) -> np.ndarray:
    cnt = np.isfinite(x_snr).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.nansum(x_snr, -1) / cnt, np.nan)
