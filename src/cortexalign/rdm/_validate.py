"""Checks at the public boundary of the RDM kernel and the metrics: features and RDMs become float64
tensors or fail with an ``InputError`` that names the parameter and the fix (STYLE.md habit 5)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import xarray as xr

from cortexalign.errors import InputError

__all__ = ["MIN_STIMULI", "ConstantFeaturesWarning", "warn_constant", "as_tensor", "as_array", "check_finite", "check_features", "stimulus_matrix", "check_n_stimuli", "check_varies"]


class ConstantFeaturesWarning(UserWarning):
    """Stimuli with a constant feature vector in a correlation or cosine RDM."""


def warn_constant(zero: np.ndarray, center: bool, stacklevel: int = 4) -> None:
    """Correlation (cosine) with a constant (all-zero) vector is undefined: such a stimulus is
    taken as uncorrelated with every other, dissimilarity 1 (e.g. a silent spiking layer)."""
    what = "a constant feature vector" if center else "an all-zero feature vector"
    warnings.warn(f"{int(zero.sum())} of {len(zero)} stimuli have {what} (first at row "
                  f"{int(np.flatnonzero(zero)[0])}): their {'correlation' if center else 'cosine'}"
                  " with every other stimulus is undefined and is taken as 0 (dissimilarity 1);"
                  " drop them, or use rdm_method='euclidean'", ConstantFeaturesWarning,
                  stacklevel=stacklevel)


def _refuse_labelled(x, name: str) -> None:
    # labelled data (an RDMSet, which has .rdms; an xarray DataArray) is refused, not unwrapped
    if isinstance(x, xr.DataArray) or hasattr(x, "rdms"):
        raise InputError(name, "a numeric array", type(x).__name__,
                         "pass the array itself (e.g. features_sd as an (s, d) array)")


def _not_numeric(x, name: str, err: Exception) -> InputError:
    return InputError(name, "a numeric array", f"{type(x).__name__} ({err})",
                      "pass a numpy array or a torch tensor")


def _check_ndim(shape: tuple[int, ...], name: str, ndim: tuple[int, ...]) -> None:
    if len(shape) not in ndim:
        shapes = " or ".join(f"{k}-d" for k in ndim)
        raise InputError(name, f"a {shapes} array", f"shape {tuple(shape)}",
                         "reshape it (features are (stimulus, feature); flatten spatial dims)")


def _raise_not_finite(bad, name: str) -> None:
    """The error for NaN/Inf entries, ``bad`` the boolean mask (tensor or array)."""
    first = tuple(int(i) for i in np.argwhere(np.asarray(bad))[0])
    raise InputError(name, "finite values", f"{int(bad.sum())} NaN/Inf values (first at "
                     f"index {first})", "drop or impute those entries (e.g. remove dead units "
                     "or stimuli with missing data) before scoring")


def as_tensor(x, name: str, device: torch.device, ndim: tuple[int, ...]) -> torch.Tensor:
    """``x`` (numpy, torch or nested lists) as a finite float64 tensor on ``device``."""
    _refuse_labelled(x, name)
    try:
        if isinstance(x, torch.Tensor):
            t = x.detach()
        else:
            arr = np.asarray(x)
            # read-only arrays (cached features) are copied: torch cannot wrap them safely
            t = torch.as_tensor(arr if arr.flags.writeable else arr.copy())
    except (TypeError, ValueError) as err:
        raise _not_numeric(x, name, err) from None
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64,
                                                  torch.uint8)):
        raise InputError(name, "a real-valued array", f"dtype {t.dtype}", "cast to float")
    _check_ndim(tuple(t.shape), name, ndim)
    t = t.to(device=device, dtype=torch.float64)
    # one reduction without a temporary: NaN/Inf make the sum non-finite; a sum that overflows
    # although every value is finite falls through to the exact check, which then passes
    if not math.isfinite(float(t.sum())) and not bool(torch.isfinite(t).all()):
        _raise_not_finite((~torch.isfinite(t)).cpu().numpy(), name)
    return t


#: The NumPy dtypes ``as_tensor`` takes (floating point, signed integers, uint8).
_REAL = tuple(np.dtype(t) for t in ("float16", "float32", "float64", "int8", "int16", "int32",
                                    "int64", "uint8"))


def _torch_dtype(dtype: np.dtype) -> str:
    try:
        return str(torch.from_numpy(np.empty(0, dtype)).dtype)
    except TypeError:
        return str(dtype)


def as_array(x, name: str, ndim: tuple[int, ...]) -> np.ndarray:
    """``x`` (numpy, a CPU tensor outside autograd, nested lists) as a float64 NumPy array, with
    the checks of :func:`as_tensor` but finiteness: the caller checks that with
    :func:`check_finite` on a reduction it computes anyway (a NaN or Inf reaches every sum), so
    the small-data path (``compute.numpy_kernel``) makes no extra pass over the data."""
    _refuse_labelled(x, name)
    try:
        arr = x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    except (TypeError, ValueError) as err:
        raise _not_numeric(x, name, err) from None
    if arr.dtype.kind not in "biufc":  # strings, objects: what torch.as_tensor cannot take
        raise _not_numeric(x, name, TypeError(f"dtype {arr.dtype}"))
    if arr.dtype not in _REAL:
        raise InputError(name, "a real-valued array", f"dtype {_torch_dtype(arr.dtype)}",
                         "cast to float")
    _check_ndim(arr.shape, name, ndim)
    return arr.astype(np.float64, copy=False)


def check_finite(reduced: np.ndarray, x: np.ndarray, name: str) -> None:
    """``as_tensor``'s NaN/Inf error for ``x`` when ``reduced`` (a sum, mean or squared norm of
    ``x`` the caller computed) is not finite and neither is ``x`` (a finite ``x`` whose sum
    overflows passes)."""
    if not np.isfinite(reduced).all() and not np.isfinite(x).all():
        _raise_not_finite(~np.isfinite(x), name)


#: The fewest stimuli the stimulus x stimulus measures accept, and why (checked by the metrics
#: and, before any work, by ``cortexalign run``). Three stimuli gave RSA -1.000 with the
#: interval [-1, -1] and CKA 0.63 with [0.63, 1.0]: numbers without meaning.
MIN_STIMULI = {
    "rsa": (4, "an RDM over s stimuli holds s(s-1)/2 dissimilarities: 3 stimuli give 3, whose "
               "rank correlation can only be -1, -0.5, 0.5 or 1, and every bootstrap resample "
               "of 3 stimuli repeats them"),
    "cka": (4, "the centred s x s Gram matrices have rank at most s - 1: with 3 stimuli linear "
               "CKA of unrelated features is already far above 0 and its resamples pile up at 1"),
}


def check_features(x_sd: torch.Tensor, name: str, min_stimuli: int = 3, why: str = "") -> None:
    """Enough stimuli, and a feature set that varies across stimuli.

    ``name`` starting with ``target`` means neural data: the messages then speak of neuroids and
    responses, not features and layers. ``why`` explains ``min_stimuli`` in the message.
    """
    neural = name.startswith("target")
    s = x_sd.shape[0]
    if s < min_stimuli:
        raise InputError(name, f"at least {min_stimuli} stimuli (rows)" + (f": {why}" if why
                                                                           else ""), f"{s}",
                         "score on more stimuli")
    if x_sd.shape[1] == 0:
        raise InputError(name, f"at least one {'neuroid' if neural else 'feature'} (column)",
                         "0 columns", "check the neuroid selection (area, Cre line, reliability "
                         "threshold)" if neural else "check the layer selection")
    if s >= 2 and bool((x_sd[1] != x_sd[0]).any()):  # the usual case, decided by two rows
        return
    if bool((x_sd == x_sd[:1]).all()):
        if neural:
            raise InputError(name, "neural responses that vary across stimuli", "every stimulus "
                             "has the same response in every neuroid (zero variance)",
                             "check the neural data: a fill value or all-zero file, responses "
                             "averaged over stimuli, or a selection keeping only silent neuroids")
        raise InputError(name, "features that vary across stimuli", "every stimulus has the same "
                         "feature vector (zero variance)", "check the layer (dead units, a constant "
                         "input, an unnormalised image set) or pick another layer")


def check_n_stimuli(n_features: int, n_target: int, name: str = "features_sd") -> None:
    """As many feature rows as target stimuli, else an ``InputError`` naming ``name``."""
    if n_features != n_target:
        raise InputError(name, f"{n_target} stimuli (rows), as many as the target", f"{n_features}",
                         "align features and target by stimulus_id (cortexalign.neural.align_ids) "
                         "before scoring")


def check_varies(vec_rp: torch.Tensor, name: str) -> None:
    """Every row of an (r, p) set of RDM vectors must vary (a constant RDM has no correlation)."""
    const = (vec_rp.amax(dim=1) - vec_rp.amin(dim=1)) <= 0
    if bool(const.any()):
        raise InputError(name, "RDMs whose dissimilarities vary", f"{int(const.sum())} constant "
                         f"RDM(s) (first at index {int(torch.nonzero(const)[0])})",
                         "check the source: all stimuli are equally dissimilar, so no correlation "
                         "with it is defined")


def stimulus_matrix(x, name: str, device: torch.device, *, what: str, square_fix: str,
                    symmetric_fix: str, min_stimuli: int, bound: float) -> torch.Tensor:
    """A stimulus x stimulus matrix (model RDM, Gram) as a finite float64 (s, s) tensor on
    ``device``: square, over at least ``min_stimuli`` stimuli, symmetric to ``bound``."""
    t = as_tensor(x, name, device, ndim=(2,))
    s = t.shape[0]
    if t.shape[1] != s:
        raise InputError(name, f"a square (s, s) {what}", f"shape {tuple(t.shape)}", square_fix)
    if s < min_stimuli:
        raise InputError(name, f"a {what} over at least {min_stimuli} stimuli", f"{s}",
                         "score on more stimuli")
    asym = float((t - t.T).abs().amax())
    if asym > bound * max(float(t.abs().amax()), 1e-300):
        raise InputError(name, f"a symmetric {what} (|M - M^T| <= {bound:.3g} x its largest "
                         "entry)", f"max |M - M^T| = {asym:.3g}", symmetric_fix)
    return t
