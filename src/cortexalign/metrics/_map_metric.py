"""Map-to-map metrics: each stimulus's model map against every neuron's response-weighted map.

The seed analysis (Jalil, Qazi & Iqbal 2025/2026) compares a neuron's map
``N_n = sum_i w_ni (image_i - mean image)`` (``cortexalign.neural.neuron_maps``) with a model's
attention or feature maps by RMSE. Here every (stimulus map, neuron map) pair is compared
(``compare_maps``) and the score is the median over all pairs (``map_score``): ``map_rmse``
(lower is better; maps scaled by ``scaling``, ``minmax`` by default, stated in ``extra``),
``map_pearson`` and ``map_spearman`` (scale free).

What we add (ours, documented):

- ceiling: split-half over repetitions. Each neuron's map is built from a random half of its
  repetitions and compared with the map of the other half, averaged over ``n_splits`` splits; for
  Pearson/Spearman the median over neurons is stepped up with Spearman-Brown (``2r / (1 + r)``),
  for RMSE it is the median half-vs-half RMSE (a noise floor: no model can expect to go lower).
- p-value (``n_permutations > 0``): the stimulus labels of the responses are shuffled, the neuron
  maps rebuilt and the median recomputed; ``p = (1 + #{null at least as good}) / (1 + P)``
  (Phipson & Smyth 2010), one-sided in the metric's better direction.
- interval (``n_bootstrap > 0``): percentile interval of the median over neuron resamples.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import xarray as xr

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.memo import Memo, array_digest
from cortexalign.metrics._maps import MAP_MEASURES, MAP_MEASURES_AGAINST, MAP_SCALINGS, map_score
from cortexalign.metrics._registry import METRICS
from cortexalign.metrics._score import Score
from cortexalign.neural import (
    WEIGHTINGS,
    check_finite,
    neuron_maps,
    stimuli_on_grid,
    validate_responses,
)
from cortexalign.stats import spearman_brown
from cortexalign.stimuli import StimulusSet

__all__ = ["map_rmse", "map_pearson", "map_spearman", "map_permutation_null", "MAP_CITATION",
           "resampled_map_scores"]

MAP_CITATION = ("Jalil, Qazi & Iqbal (2026). Segment Anything attention maps vs mouse visual "
                "cortex, PMLR 308 (neuron maps as response-weighted stimulus averages, map RMSE); "
                "split-half ceiling and permutation p-values are cortexalign's additions")


def _check(features, target, stimuli) -> tuple[np.ndarray, np.ndarray]:
    """(s, gh, gw) model maps and (s, n[, r]) responses, validated against the stimuli."""
    maps = np.asarray(features, dtype=np.float64)
    if maps.ndim != 3:
        raise InputError("features", "(s, gh, gw) model maps, one per stimulus",
                         f"shape {maps.shape}", "give the model features: attention or "
                         "features: conv_map in the config (map metrics compare maps)")
    check_finite(maps, "features")
    if maps.shape[0] and np.ptp(maps.reshape(maps.shape[0], -1), axis=1).max() == 0:
        raise InputError("features", "model maps with spatial variation",
                         "maps that are constant over the grid for every stimulus",
                         "pick a layer or block whose maps vary (e.g. another attention block)")
    if not isinstance(stimuli, StimulusSet):
        raise InputError("stimuli", "the StimulusSet the responses were recorded to",
                         type(stimuli).__name__, "pass stimuli= (the runner does it for you)")
    if not isinstance(target, xr.DataArray):
        raise InputError("target", "a responses DataArray (stimulus, neuroid[, repetition])",
                         type(target).__name__, "map metrics need responses, not RDMs")
    da = validate_responses(target, allow_nan=True)
    if maps.shape[0] != da.sizes["stimulus"] or len(stimuli) != da.sizes["stimulus"]:
        raise InputError("features", f"{da.sizes['stimulus']} stimuli, as many as the target",
                         f"{maps.shape[0]} maps and {len(stimuli)} images", "align by "
                         "stimulus_id (cortexalign.neural.align_ids)")
    return maps, da.transpose("stimulus", "neuroid", ...).values.astype(np.float64)


def _nanmean_reps(r: np.ndarray) -> np.ndarray:
    if r.ndim == 2:
        return r
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(r, axis=2)


def _median(measure: str, scaling: str, model_bp: np.ndarray, neuron_kp: np.ndarray) -> float:
    return float(np.median(MAP_MEASURES[measure](model_bp, neuron_kp, scaling)))


def _images(stimuli, grid, pad_square: bool, subtract_mean_image: bool) -> np.ndarray:
    img_sgg = stimuli_on_grid(stimuli, grid, pad_square)
    if subtract_mean_image:
        img_sgg = img_sgg - img_sgg.mean(0, keepdims=True)
    return img_sgg.reshape(img_sgg.shape[0], -1)


def map_permutation_null(maps_sgg, responses_sn, images_sp, *, measure: str, scaling: str,
                         weighting: str, n_permutations: int, seed: int = 0) -> np.ndarray:
    """(P,) medians of the map measure with the responses' stimulus labels shuffled.

    Parameters
    ----------
    maps_sgg : (s, gh, gw) model maps; responses_sn : (s, n) responses (repetitions averaged);
    images_sp : (s, gh * gw) stimuli on the maps' grid (mean image removed when the observed
        neuron maps had it removed). Shuffling the response labels is the same as shuffling the
        images under fixed weights, and as un-shuffling the weights under fixed images:
        ``N_perm = W_ns @ images_sp[perm] = W_ns[:, perm^-1] @ images_sp``, so a chunk of
        permutations is one (c n, s) x (s, p) product, with no permuted copy of the images.
    """
    model_bp = np.asarray(maps_sgg, dtype=np.float64).reshape(len(maps_sgg), -1)
    w_ns = WEIGHTINGS[weighting](np.asarray(responses_sn, dtype=np.float64).T)
    images_sp = np.asarray(images_sp, dtype=np.float64)
    seed = int(seed)
    if measure == "pearson":
        return _pearson_null(model_bp, w_ns, images_sp, int(n_permutations), seed)
    if measure == "rmse" and scaling == "minmax":
        return _minmax_rmse_null(model_bp, w_ns, images_sp, int(n_permutations), seed)
    against = MAP_MEASURES_AGAINST[measure](model_bp, scaling)  # the model side, scaled once
    n_perm, n, p = int(n_permutations), w_ns.shape[0], images_sp.shape[1]
    null = np.empty(n_perm)
    for start, w_kn in _permuted_weights(w_ns, n_perm, seed, p + len(model_bp)):
        c = len(w_kn) // n
        vals_bk = against(w_kn @ images_sp)
        null[start:start + c] = np.median(vals_bk.reshape(len(model_bp), c, n)
                                          .transpose(1, 0, 2).reshape(c, -1), axis=1)
    return null


NULL_CHUNK_VALUES = 2**21
"""Values (float64) of a chunk's largest temporary in the map nulls: 16 MB, small enough for
the allocator to reuse (larger blocks are mapped afresh each time, at a page fault per 4 kB)."""


def _permuted_weights(w_ns: np.ndarray, n_perm: int, seed: int, width: int):
    """Chunks ``(start, (c n, s))`` of the weights under the permutations
    ``np.random.default_rng(seed)`` draws (one ``rng.permutation(s)`` after the other), rows
    ordered permutation-major; a chunk's (c n, width) products stay under
    ``NULL_CHUNK_VALUES``."""
    n, s = w_ns.shape
    inv_ps = _inverse_permutations(s, n_perm, seed)
    chunk = max(1, min(n_perm, NULL_CHUNK_VALUES // (n * max(s, width))))
    for start in range(0, n_perm, chunk):
        inv_cs = inv_ps[start:start + chunk]
        yield start, w_ns[:, inv_cs].transpose(1, 0, 2).reshape(len(inv_cs) * n, s)


def _inverse_permutations(s: int, n_perm: int, seed: int) -> np.ndarray:
    """(P, s) inverses of the permutations of the null (the same for every group of a grid:
    kept in ``_MEMO``)."""
    def draw() -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.argsort(np.stack([rng.permutation(s) for _ in range(n_perm)]), axis=1)

    return _MEMO.get(("map_null_perms", s, n_perm, seed), draw)


def _medians(vals_kb: np.ndarray, c: int) -> np.ndarray:
    """(c,) median over each permutation's (n, b) values (rows permutation-major)."""
    return np.median(vals_kb.reshape(c, -1), axis=1)


def _pearson_null(model_bp, w_ns, images_sp, n_perm, seed) -> np.ndarray:
    """The Pearson null without building the permuted neuron maps.

    A neuron map is linear in the images, ``N = W I_perm``; centred over pixels it is
    ``W Ic_perm`` (``Ic``: each image minus its pixel mean). So its dot product with a z-scored
    model map ``a`` is ``(W (Ic a^T)[perm])`` and its squared norm ``w^T (Ic Ic^T)[perm, perm] w``:
    two (s, b) and (s, s) products made once, after which a permutation costs O(n s (b + s)),
    not O(n s p). ``r = a_z . N_c / sqrt(p |N_c|^2)``, the same value as ``MAP_MEASURES``'.
    """
    p = images_sp.shape[1]
    ic_sp = images_sp - images_sp.mean(1, keepdims=True)
    a_bp = (model_bp - model_bp.mean(1, keepdims=True)) / model_bp.std(1, keepdims=True)
    g_sb, k_ss = ic_sp @ a_bp.T, ic_sp @ ic_sp.T
    null = np.empty(n_perm)
    for start, w_ks in _permuted_weights(w_ns, n_perm, seed, max(g_sb.shape)):
        c = len(w_ks) // len(w_ns)
        norm2_k = np.einsum("ks,ks->k", w_ks @ k_ss, w_ks)
        with np.errstate(invalid="ignore", divide="ignore"):  # a flat map: NaN, as directly
            r_kb = (w_ks @ g_sb) / np.sqrt(p * norm2_k)[:, None]
        null[start:start + c] = _medians(r_kb, c)
    return null


def _minmax_rmse_null(model_bp, w_ns, images_sp, n_perm, seed) -> np.ndarray:
    """The RMSE null of min-max scaled maps with one large product per chunk.

    Min-max scaling needs each permuted neuron map's minimum and maximum, so the maps
    ``N = W_perm I`` are built; the cross term with the scaled model maps ``a'`` is then
    ``(a' . N - lo sum(a')) / (hi - lo)`` with ``a' . N = W_perm (I a'^T)``, an (s, b) product
    made once, instead of a second (c n, p) x (p, b) product.
    """
    p = images_sp.shape[1]
    a_bp = MAP_SCALINGS["minmax"](model_bp)
    a2_b, asum_b, g_sb = (a_bp**2).sum(1), a_bp.sum(1), images_sp @ a_bp.T
    null = np.empty(n_perm)
    for start, w_ks in _permuted_weights(w_ns, n_perm, seed, p):
        c = len(w_ks) // len(w_ns)
        maps_kp = w_ks @ images_sp
        lo_k, hi_k = maps_kp.min(1), maps_kp.max(1)
        maps_kp -= lo_k[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):  # a flat map: NaN, as directly
            d_k = hi_k - lo_k
            b2_k = np.einsum("kp,kp->k", maps_kp, maps_kp) / d_k**2
            cross_kb = ((w_ks @ g_sb) - lo_k[:, None] * asum_b[None]) / d_k[:, None]
        sq_kb = a2_b[None] + b2_k[:, None] - 2.0 * cross_kb
        null[start:start + c] = _medians(np.sqrt(np.clip(sq_kb, 0.0, None) / p), c)
    return null


def resampled_map_scores(features_sgg, target, stimuli, counts_ns, *, measure: str,
                         pad_square: bool = False, scaling: str | None = None,
                         weighting: str = "zscore", subtract_mean_image: bool = True
                         ) -> np.ndarray:
    """(N,) value of ``map_<measure>`` on each stimulus resample given as draw counts.

    Row ``i`` of ``counts_ns`` (N, s) says how often each stimulus is drawn (0: left out). The
    value is the metric's on the drawn stimuli, copies repeated: neuron maps re-weighted from
    the drawn responses (``weighting`` and the mean image over the draws), every drawn model map
    against every neuron map, median over pairs. With every count 1 it is the metric's value.
    The images are put on the maps' grid once (no ceiling, no reload per resample), so this is
    the cheap exact form ``analyses`` uses for benchmark discriminability. NaN where a resample
    has < 2 stimuli or a neuron's drawn responses allow no weights (e.g. constant).

    Parameters
    ----------
    features_sgg : (s, gh, gw) model maps; target : responses (stimulus, neuroid[, repetition]);
    stimuli : the s images (``StimulusSet``); measure : ``rmse``, ``pearson`` or ``spearman``.
    pad_square, scaling, weighting, subtract_mean_image : as for the metric (``scaling`` None:
        the metric's default, ``minmax`` for RMSE, ``zscore`` otherwise).
    """
    if measure not in MAP_MEASURES:
        raise UnknownNameError("map measure", str(measure), MAP_MEASURES)
    scaling = scaling or ("minmax" if measure == "rmse" else "zscore")
    _check_options(scaling, weighting)
    maps, r = _check(features_sgg, target, stimuli)
    counts = np.asarray(counts_ns)
    if counts.ndim != 2 or counts.shape[1] != maps.shape[0] or (counts < 0).any():
        raise InputError("counts_ns", f"(N, {maps.shape[0]}) non-negative draw counts",
                         f"shape {counts.shape}", "one row per resample, one count per stimulus")
    r_sn = _nanmean_reps(r)
    model_sp = maps.reshape(len(maps), -1)
    images_sp = _images(stimuli, maps.shape[1:], pad_square, False)
    out = np.full(len(counts), np.nan)
    for i, c in enumerate(counts):
        idx = np.repeat(np.arange(len(c)), c.astype(int))
        if len(idx) < 2:
            continue
        w_ns = WEIGHTINGS[weighting](r_sn[idx].T)
        if not np.isfinite(w_ns).all():
            continue
        img = images_sp[idx]
        if subtract_mean_image:
            img = img - img.mean(0, keepdims=True)
        out[i] = _median(measure, scaling, model_sp[idx], w_ns @ img)
    return out


def _split_half(r_snr, images_sp, measure, scaling, weighting, n_splits, seed) -> float:
    """Median over neurons of the half-vs-half map measure (Spearman-Brown for correlations).

    It depends on the responses and the grid, not on the model: kept per input (``_MEMO``), as
    a grid scores every layer with the same grid against the same groups."""
    key = ("map_split_half", array_digest(r_snr, images_sp), measure, scaling, weighting,
           int(n_splits), int(seed))
    return _MEMO.get(key, lambda: _split_half_direct(r_snr, images_sp, measure, scaling,
                                                     weighting, n_splits, seed))


_MEMO = Memo(2**26)


def _split_half_direct(r_snr, images_sp, measure, scaling, weighting, n_splits, seed) -> float:
    s, n, r = r_snr.shape
    rng = np.random.default_rng(seed)
    total = np.zeros(n)
    for _ in range(int(n_splits)):
        order = np.argsort(rng.random((s, r)), axis=1)
        shuffled = np.take_along_axis(r_snr, order[:, None, :], axis=2)
        halves = []
        for part in (shuffled[:, :, : r // 2], shuffled[:, :, r // 2:]):
            h_sn = _nanmean_reps(part)
            h_sn = np.where(np.isfinite(h_sn), h_sn, np.nanmean(h_sn, axis=0, keepdims=True))
            halves.append(WEIGHTINGS[weighting](h_sn.T) @ images_sp)
        a_np, b_np = halves
        with np.errstate(invalid="ignore", divide="ignore"):
            total += np.diagonal(MAP_MEASURES[measure](a_np, b_np, scaling))
    per_neuron = total / int(n_splits)
    if measure == "rmse":
        return float(np.nanmedian(per_neuron))
    return float(spearman_brown(np.nanmedian(per_neuron)))


def _check_options(scaling: str, weighting: str) -> None:
    """The map metrics' option names: ``scaling`` in ``MAP_SCALINGS``, ``weighting`` in
    ``WEIGHTINGS`` (``neuron_maps``)."""
    if scaling not in MAP_SCALINGS:
        raise UnknownNameError("map scaling", str(scaling), MAP_SCALINGS)
    if weighting not in WEIGHTINGS:
        raise UnknownNameError("map weighting", str(weighting), WEIGHTINGS)


def _check_metric_options(arguments: dict) -> None:
    """``check_options`` metadata of the map metrics (``metrics.check_options``)."""
    _check_options(arguments["scaling"], arguments["weighting"])


def _map_metric(measure, features, target, *, stimuli, pad_square, n_bootstrap, seed, scaling,
                weighting, subtract_mean_image, n_permutations, n_splits) -> Score:
    _check_options(scaling, weighting)
    maps, r = _check(features, target, stimuli)
    grid = maps.shape[1:]
    r_sn = _nanmean_reps(r)
    neuron_ngg = neuron_maps(r_sn, stimuli, grid, weighting=weighting,
                             subtract_mean_image=subtract_mean_image, pad_square=pad_square)
    base = map_score(maps, neuron_ngg, measure, scaling)
    m_bn = base.extra["matrix"]
    higher = measure != "rmse"
    extra = {k: v for k, v in base.extra.items() if k != "matrix"}
    extra.update(grid=list(grid), weighting=weighting, subtract_mean_image=subtract_mean_image,
                 pad_square=pad_square, n_neuroids=int(r_sn.shape[1]),
                 convention=(f"maps scaled by {scaling} per map before RMSE" if not higher else
                             "scale free (correlation over the map's pixels)"))
    images_sp = _images(stimuli, grid, pad_square, subtract_mean_image)
    c = math.nan
    if r.ndim == 3 and r.shape[2] >= 2:
        c = _split_half(r, images_sp, measure, scaling, weighting, n_splits, seed)
        extra["ceiling"] = ("split-half neuron maps, Spearman-Brown" if higher else
                            "split-half neuron-map RMSE (noise floor)")
    p = math.nan
    if n_permutations:
        from cortexalign.stats import exact_p_value  # stats builds on metrics: import here

        null = map_permutation_null(maps, r_sn, images_sp, measure=measure, scaling=scaling,
                                    weighting=weighting, n_permutations=n_permutations, seed=seed)
        p = exact_p_value(base.value, null, "greater" if higher else "less")
        extra.update(n_permutations=int(n_permutations), null_median=float(np.median(null)))
    lo = hi = math.nan
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, m_bn.shape[1], (int(n_bootstrap), m_bn.shape[1]))
        boots = np.array([np.median(m_bn[:, i]) for i in idx])
        lo, hi = (float(v) for v in np.percentile(boots, [2.5, 97.5]))
        extra["ci_over"] = "neuroids"
        extra["interval"] = f"95% percentile bootstrap over neurons ({int(n_bootstrap)} resamples)"
    return Score(base.value, lo, hi, c, c, p, n_stimuli=int(maps.shape[0]), extra=extra)


def _register(measure: str, default_scaling: str, description: str):
    def metric(features_sgg, target, *, stimuli=None, pad_square: bool = False,
               n_bootstrap: int = 0, seed: int = 0, device=None, scaling: str = default_scaling,
               weighting: str = "zscore", subtract_mean_image: bool = True,
               n_permutations: int = 0, n_splits: int = 10) -> Score:
        return _map_metric(measure, features_sgg, target, stimuli=stimuli, pad_square=pad_square,
                           n_bootstrap=n_bootstrap, seed=seed, scaling=scaling,
                           weighting=weighting, subtract_mean_image=subtract_mean_image,
                           n_permutations=n_permutations, n_splits=n_splits)

    metric.__name__ = metric.__qualname__ = f"map_{measure}"
    metric.__doc__ = f"""{description}

    Parameters
    ----------
    features_sgg : (s, gh, gw) model maps (attention or conv maps), rows in the target's order.
    target : responses (stimulus, neuroid[, repetition]); repetitions are averaged.
    stimuli : the s images (``StimulusSet``, same order); neuron maps are built on the maps' grid.
    pad_square : the model's maps cover the image padded bottom/right to a square (SAM).
    scaling : per-map scaling before RMSE (``MAP_SCALINGS``; Pearson/Spearman ignore it).
    weighting, subtract_mean_image : how neuron maps are built (``neuron_maps``).
    n_permutations : stimulus-label shuffles for the p-value (0: none).
    n_bootstrap : percentile 95% interval over neuron resamples (0: none).
    n_splits : random repetition splits of the split-half ceiling.

    Returns
    -------
    Score: median over (stimulus map, neuron map) pairs; ``extra`` holds ``per_neuroid`` (mean
    over stimulus maps), the scaling/convention, grid and options; see the module docstring.
    """
    METRICS.add(f"map_{measure}", metric, citation=MAP_CITATION, target="responses",
                higher_is_better=measure != "rmse", needs_stimuli=True, features="maps",
                description=description, check_options=_check_metric_options)
    return metric


map_rmse = _register("rmse", "minmax", "RMSE between each stimulus's model map and each neuron's "
                     "response-weighted stimulus map (min-max scaled maps; median over pairs)")
map_pearson = _register("pearson", "zscore", "Pearson r between each stimulus's model map and each "
                        "neuron's response-weighted stimulus map (median over pairs)")
map_spearman = _register("spearman", "zscore", "Spearman rho between each stimulus's model map and "
                         "each neuron's response-weighted stimulus map (median over pairs)")
