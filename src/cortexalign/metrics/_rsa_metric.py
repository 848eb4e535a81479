"""The ``rsa`` metric: a model RDM compared with neural RDMs, with ceiling and bootstrap interval.

``rsa`` makes the model RDM from (s, d) features; ``rsa_from_rdm`` takes a model RDM made
elsewhere (e.g. ``streaming_rdm`` over features that do not fit in memory). Both hand its upper
triangle to ``_score_model_vector``, so the same RDM gives the same Score, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr

from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics._brainscore import with_protocol
from cortexalign.metrics._registry import METRICS
from cortexalign.metrics._responses import responses_tensor
from cortexalign.metrics._score import Score
from cortexalign.neural import RDMSet
from cortexalign.rdm import (
    MIN_STIMULI,
    RDM_COMPARISONS,
    RDM_METHODS,
    as_tensor,
    check_features,
    check_n_stimuli,
    check_varies,
    compare_vectors,
    rdm_tensor,
    rdm_vectors,
    stimulus_matrix,
    upper_tri,
)

__all__ = ["rsa", "rsa_from_rdm", "NO_CEILING_ONE_RDM"]

#: What a target of one RDM reports instead of a noise ceiling (score, table and report).
NO_CEILING_ONE_RDM = "no ceiling (one RDM)"

RSA_CITATION = ("Kriegeskorte, Mur & Bandettini (2008). Representational similarity analysis - "
                "connecting the branches of systems neuroscience. Front. Syst. Neurosci. 2:4; "
                "noise ceiling and comparisons: Nili et al. (2014) PLoS Comput Biol 10:e1003553")


def _check_name(value: str, table: dict, kind: str) -> None:
    if value not in table:
        raise UnknownNameError(kind, str(value), table)


def _neural_vectors(target, s: int, method: str, device: torch.device,
                    name: str = "features_sd"):
    """Target -> ((k, p) neural RDM vectors, the RDMSet or the responses tensor they came from)."""
    if isinstance(target, RDMSet):
        check_n_stimuli(s, target.n_stimuli, name)
        return rdm_vectors(target, "target", device), target
    if isinstance(target, xr.DataArray):
        reps = target.ndim == 3
        resp = responses_tensor(target, device, keep_repetitions=reps)
        check_n_stimuli(s, resp.shape[0], name)
        if method == "crossnobis" and not reps:
            raise InputError("neural_rdm_method", "responses with a 'repetition' dim for crossnobis",
                             f"dims {target.dims}", "use neural_rdm_method='euclidean'")
        x = resp if method == "crossnobis" else (resp.mean(dim=2) if reps else resp)
        check_features(x if x.ndim == 2 else x.mean(dim=2), "target")
        vec = upper_tri(rdm_tensor(x, method))[None]
        check_varies(vec, "target")
        return vec, resp
    raise InputError("target", "an RDMSet or a responses DataArray (stimulus, neuroid[, "
                     "repetition])", type(target).__name__, "load it with cortexalign.neural."
                     "load_neural, or wrap an array with make_responses / RDMSet")


def _check_names(rdm_method: str, compare: str, neural_rdm_method: str | None) -> str:
    """Validate the method names; returns the neural RDM method (default: ``rdm_method``)."""
    _check_name(rdm_method, RDM_METHODS, "RDM method")
    _check_name(compare, RDM_COMPARISONS, "RDM comparison")
    neural_rdm_method = neural_rdm_method or rdm_method
    _check_name(neural_rdm_method, RDM_METHODS, "RDM method")
    return neural_rdm_method


def _check_options(rdm_method: str, compare: str, neural_rdm_method: str | None) -> str:
    """``rsa``'s options: the method names (``_check_names``) and no ``crossnobis`` for the
    model RDM (it needs repetitions, which features do not have); returns the neural RDM
    method."""
    neural_rdm_method = _check_names(rdm_method, compare, neural_rdm_method)
    if rdm_method == "crossnobis":
        raise InputError("rdm_method", "a method for (s, d) model features (correlation, "
                         "euclidean, cosine)", "'crossnobis'", "use crossnobis as "
                         "neural_rdm_method for responses with repetitions")
    return neural_rdm_method


def _check_metric_options(arguments: dict) -> None:
    """``check_options`` metadata of ``rsa`` (``metrics.check_options``)."""
    _check_options(arguments["rdm_method"], arguments["compare"], arguments["neural_rdm_method"])


def _tensor_device(x, device) -> torch.device:
    # a tensor stays where it is (no host round trip); the model RDM never leaves the device
    return x.device if device is None and isinstance(x, torch.Tensor) else resolve_device(device)


def _model_rdm_tensor(rdm_ss, device: torch.device, name: str = "model_rdm_ss",
                      tol: float = 1e-5) -> torch.Tensor:
    """A model RDM as a float64 (s, s) tensor on ``device``: square, finite, symmetric and with
    a zero diagonal to ``tol`` times its largest magnitude (float32 rounding passes, a
    similarity matrix or a transposed mistake does not), at least 4 stimuli (``MIN_STIMULI``)."""
    r = stimulus_matrix(rdm_ss, name, device, what="RDM", min_stimuli=MIN_STIMULI["rsa"][0],
                        bound=tol,
                        square_fix="pass the full matrix (scipy.spatial.distance.squareform "
                                   "turns a condensed vector into one)",
                        symmetric_fix="pass a dissimilarity matrix, e.g. (R + R.T) / 2 if the "
                                      "asymmetry is rounding")
    bound = tol * max(1.0, float(r.abs().amax()))
    diag = float(torch.diagonal(r).abs().amax())
    if diag > bound:
        raise InputError(name, f"a zero diagonal (|R_ii| <= {bound:.3g})", f"max |R_ii| = "
                         f"{diag:.3g}", "a stimulus is not dissimilar to itself: pass an RDM, "
                         "not a similarity matrix (1 - correlation, not correlation)")
    return r


@METRICS.register("rsa", citation=RSA_CITATION, target="any",
                  description="Representational similarity analysis: model RDM vs neural RDMs "
                              "(Spearman by default), leave-one-subject-out noise ceiling",
                  check_options=_check_metric_options, min_stimuli=MIN_STIMULI["rsa"])
@with_protocol("rsa")
def rsa(features_sd, target, *, n_bootstrap: int = 0, seed: int = 0, device=None,
        rdm_method: str = "correlation", compare: str = "spearman",
        neural_rdm_method: str | None = None, ceiling_by: str | None = "subject",
        ci_level: float = 0.95, n_splits: int = 10) -> Score:
    """Compare the model's RDM with the target's RDM(s).

    Parameters
    ----------
    features_sd : (s, d) model features, rows in the target's stimulus order; a torch tensor is
        scored on its own device (when ``device`` is None) with no host copy.
    target : ``RDMSet`` of r RDMs, or responses ``DataArray`` (stimulus, neuroid[, repetition]).
    rdm_method : model RDM method (``RDM_METHODS``); ``neural_rdm_method`` for responses targets
        (default: the same; ``crossnobis`` uses the repetitions).
    compare : comparison (``RDM_COMPARISONS``): ``spearman``, ``kendall_tau_a``, ``rho_a``,
        ``pearson``, ``cosine``, or the whitened ``cosine_cov`` / ``corr_cov`` (Diedrichsen et
        al. 2021, iid noise); each has a matching ceiling pooling and stimulus bootstrap.
    ceiling_by : RDMSet descriptor grouping RDMs into subjects (``None``: each RDM alone).
    n_bootstrap, seed, ci_level : percentile interval over stimulus resamples (0: none).
    n_splits : random repetition splits for the split-half ceiling of responses.

    Returns
    -------
    Score. For an RDMSet the value is the mean over subjects of the mean over that subject's RDMs
    (sessions) of the comparison, the averaging used by the noise ceiling (stats._ceiling).
    For responses the neural RDM is that of the mean over repetitions and the ceiling is the
    Spearman-Brown-corrected split-half reliability (``ceiling_low == ceiling_high``).
    """
    neural_rdm_method = _check_options(rdm_method, compare, neural_rdm_method)
    dev = _tensor_device(features_sd, device)
    x = as_tensor(features_sd, "features_sd", dev, ndim=(2,))
    check_features(x, "features_sd", *MIN_STIMULI["rsa"])
    target_kp, source = _neural_vectors(target, x.shape[0], neural_rdm_method, dev)
    model_p = upper_tri(rdm_tensor(x, rdm_method))
    check_varies(model_p[None], "features_sd")
    return _score_model_vector(model_p, target_kp, source, dev, n_stimuli=x.shape[0],
                               n_bootstrap=n_bootstrap, seed=seed, rdm_method=rdm_method,
                               compare=compare, neural_rdm_method=neural_rdm_method,
                               ceiling_by=ceiling_by, ci_level=ci_level, n_splits=n_splits)


def rsa_from_rdm(model_rdm_ss, target, *, n_bootstrap: int = 0, seed: int = 0, device=None,
                 rdm_method: str = "correlation", compare: str = "spearman",
                 neural_rdm_method: str | None = None, ceiling_by: str | None = "subject",
                 ci_level: float = 0.95, n_splits: int = 10) -> Score:
    """``rsa`` for a model RDM computed beforehand (e.g. ``streaming_rdm`` from the feature cache).

    Parameters
    ----------
    model_rdm_ss : (s, s) model RDM, rows and columns in the target's stimulus order: finite,
        symmetric and with a zero diagonal (to 1e-5 of its largest entry; only the upper
        triangle is used). A torch tensor is scored on its own device when ``device`` is None.
    target : ``RDMSet`` of r RDMs, or responses ``DataArray`` (stimulus, neuroid[, repetition]).
    rdm_method : how the model RDM was made (``RDM_METHODS``): recorded in ``extra`` and the
        default ``neural_rdm_method`` for responses targets.
    compare, neural_rdm_method, ceiling_by, n_bootstrap, seed, ci_level, n_splits : as in ``rsa``.

    Returns
    -------
    Score, the same as ``rsa(features_sd, ...)`` for ``model_rdm_ss = compute_rdm(features_sd,
    rdm_method)`` (bit for bit: both score the same upper triangle).
    """
    neural_rdm_method = _check_names(rdm_method, compare, neural_rdm_method)
    dev = _tensor_device(model_rdm_ss, device)
    rdm_ss = _model_rdm_tensor(model_rdm_ss, dev)
    target_kp, source = _neural_vectors(target, rdm_ss.shape[0], neural_rdm_method, dev,
                                        "model_rdm_ss")
    model_p = upper_tri(rdm_ss)
    check_varies(model_p[None], "model_rdm_ss")
    return _score_model_vector(model_p, target_kp, source, dev, n_stimuli=rdm_ss.shape[0],
                               n_bootstrap=n_bootstrap, seed=seed, rdm_method=rdm_method,
                               compare=compare, neural_rdm_method=neural_rdm_method,
                               ceiling_by=ceiling_by, ci_level=ci_level, n_splits=n_splits)


def ceiling_groups(source, ceiling_by: str | None, n_rdms: int) -> tuple[np.ndarray, str]:
    """Per-RDM group labels for the noise ceiling and the weighting of RDMs, and what they are.

    ``ceiling_by`` names an RDMSet descriptor (e.g. ``subject``: each subject's RDMs count
    once). ``None`` (the user's word that every RDM is its own subject), responses rather than
    RDMs, or a single RDM: every RDM is its own group (``"rdm"``). Several RDMs with the default
    ``subject`` but no such descriptor are refused: they may be areas or conditions rather than
    subjects, and a "ceiling" between areas measures their agreement, not noise. Any other name
    the set lacks is an error too: a misspelt descriptor must not silently mean "each RDM alone".
    """
    if isinstance(source, RDMSet) and ceiling_by is not None and n_rdms > 1:
        if ceiling_by in source.descriptors:
            return source.groups(ceiling_by), ceiling_by
        names = sorted(source.descriptors)
        if ceiling_by == "subject":
            raise InputError("ceiling_by", f"a 'subject' descriptor on the {n_rdms} RDMs of "
                             f"{source.name!r} (the noise ceiling treats subjects as repeated "
                             "measurements of one brain)", "RDMs without one (descriptors: "
                             f"{', '.join(names) or 'none'})", "give the RDMSet "
                             "descriptors={'subject': [...]} (one label per RDM); pass "
                             "ceiling_by=None (options: {ceiling_by: null}) if each RDM really "
                             "is one subject; or make one target per area or condition")
        raise UnknownNameError("RDM descriptor (ceiling_by)", ceiling_by, names, fix=(
            f"use one of the target's descriptors ({', '.join(names) or 'it has none'}), "
            "or ceiling_by=None to treat each RDM alone"))
    return np.arange(n_rdms), "rdm"


def _score_model_vector(model_p: torch.Tensor, target_kp: torch.Tensor, source,
                        dev: torch.device, *, n_stimuli: int, n_bootstrap: int, seed: int,
                        rdm_method: str, compare: str, neural_rdm_method: str,
                        ceiling_by: str | None, ci_level: float, n_splits: int) -> Score:
    """The Score of a validated (p,) model RDM vector against (k, p) neural RDM vectors coming
    from ``source`` (the RDMSet or the responses tensor): value, ceilings, bootstrap interval."""
    from cortexalign import stats  # stats builds on metrics: imported here to keep layering one-way

    groups, by = ceiling_groups(source, ceiling_by, target_kp.shape[0])
    weights_k = torch.as_tensor(stats.group_weights(groups), device=dev)
    per_rdm = compare_vectors(model_p[None], target_kp, compare)[0]
    value = float(per_rdm @ weights_k)

    if isinstance(source, RDMSet) and target_kp.shape[0] == 1:
        c_low = c_high = math.nan  # one RDM: nothing to estimate noise from
        extra_ceiling: dict = {"ceiling": NO_CEILING_ONE_RDM}
    elif isinstance(source, RDMSet):
        c_low, c_high = stats.noise_ceiling_vectors(target_kp, groups, compare)
        n_units = len(np.unique(groups))
        unit = by if by != "rdm" else "RDM (ceiling_by=None: each RDM a subject)"
        extra_ceiling = {"ceiling_by": by, "rdm_groups": [str(g) for g in groups],
                         "ceiling": f"noise ceiling, leave one {unit} out ({n_units} "
                                    f"{by if by != 'rdm' else 'RDM'}s)"}
    elif source.ndim == 3:
        r_half, c_low = stats.split_half_ceiling(source, neural_rdm_method, compare, n_splits, seed)
        c_high = c_low
        extra_ceiling = {"ceiling": "split-half, Spearman-Brown", "split_half_r": r_half}
    else:
        c_low = c_high = math.nan
        extra_ceiling = {"ceiling": "none (no repetitions)"}

    ci_low = ci_high = math.nan
    interval = {}
    if n_bootstrap > 0:
        samples_bk = stats.bootstrap_rdm_comparison(model_p, target_kp, compare, n_bootstrap, seed)
        ci_low, ci_high = stats.percentile_interval(samples_bk @ weights_k, ci_level)
        interval = {"interval": f"{ci_level:.0%} percentile bootstrap over stimuli "
                                f"({n_bootstrap} resamples)"}

    return Score(value=value, ci_low=ci_low, ci_high=ci_high, ceiling_low=c_low,
                 ceiling_high=c_high, n_stimuli=int(n_stimuli),
                 extra={"rdm_method": rdm_method, "neural_rdm_method": neural_rdm_method,
                        "compare": compare, "per_rdm": per_rdm.cpu().tolist(),
                        "n_bootstrap": int(n_bootstrap), "ci_level": ci_level, **interval,
                        **extra_ceiling})
