"""Variance partitioning of encoding models: how much of each neuroid's explained variance is
unique to one feature set and how much is shared between sets.

Method (Lescroart, Stansbury & Gallant 2015, Front. Comput. Neurosci. 9:135; de Heer et al. 2017,
J. Neurosci. 37:6539; Net2Brain's VPA): one cross-validated ridge encoding model per non-empty
union of 2 or 3 feature sets, each neuroid's held-out R^2 per union, and the regions of the Venn
diagram by inclusion-exclusion. For sets A, B::

    unique:A = R2(A+B) - R2(B)      unique:B = R2(A+B) - R2(A)
    shared:A&B = R2(A) + R2(B) - R2(A+B)

For A, B, C the seven regions sum to R2(A+B+C); e.g. ``unique:A = R2(A+B+C) - R2(B+C)``,
``shared:A&B = R2(A+C) + R2(B+C) - R2(C) - R2(A+B+C)`` (the part A and B share and C does not),
``shared:A&B&C = R2(A) + R2(B) + R2(C) - R2(A+B) - R2(A+C) - R2(B+C) + R2(A+B+C)``.

Choices (ours, documented):

- Every union is fitted on the same outer folds (``KFold(n_folds, shuffle=True,
  random_state=seed)``, inner seed ``seed + fold``: the convention of
  ``_encoding.cross_validated_predictions``), so the R^2 values being subtracted come from the same
  held-out stimuli.
- Each set's columns are z-scored with the mean and standard deviation of the outer training
  stimuli only (``SET_SCALINGS``), then the sets are concatenated; the test stimuli never inform
  the scaling. The inner penalty CV reuses the outer training statistics (the solver re-centres
  per inner fold, it does not re-scale).
- One penalty per neuroid *per union*, chosen by inner K-fold CV on the training stimuli
  (``_ridge.solve_ridge_cv``). A single penalty over a concatenation of sets of different sizes
  favours the larger set; ``scaling="zscore_balanced"`` divides each z-scored set by
  ``sqrt(d_set)`` so that every set brings the same total variance. Banded ridge (one penalty per
  set, Nunez-Elizalde et al. 2019) is the principled answer and is not done here.
- Components are not clipped. With noise, finite samples and imperfect penalty choice, R^2 of a
  union can fall below that of one of its parts, so unique and shared components can be negative
  (a shared component that is negative is the classic "suppression" case); read values near 0
  as 0 within their noise. Medians are taken per component over neuroids, so the medians of the
  components need not sum to the median R^2 of the full union.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.model_selection import KFold

from cortexalign.compute import sized_by, total_gram_work
from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics._encoding import DEFAULT_ALPHAS, ENCODERS, _check_inputs, encoding_scores
from cortexalign.rdm import as_tensor, check_features

__all__ = ["SET_SCALINGS", "VariancePartition", "variance_partitioning", "PARTITION_RESERVED"]

PARTITION_RESERVED = "+&:"
"""Characters a feature-set label may not contain (they build the union and component keys)."""


def _zscore(x_sd: np.ndarray, x_td: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean_d = x_sd.mean(0)
    sd_d = x_sd.std(0)
    sd_d = np.where(sd_d > 0, sd_d, 1.0)  # a column constant on the training rows stays 0
    return (x_sd - mean_d) / sd_d, (x_td - mean_d) / sd_d


def _zscore_balanced(x_sd: np.ndarray, x_td: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z_sd, z_td = _zscore(x_sd, x_td)
    root_d = np.sqrt(x_sd.shape[1])
    return z_sd / root_d, z_td / root_d


SET_SCALINGS: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "zscore": _zscore, "zscore_balanced": _zscore_balanced}
"""``f(train (s, d), test (t, d)) -> (train, test)`` scaled with training statistics only.
"zscore": every column mean 0, SD 1 (ddof 0; constant columns stay 0); "zscore_balanced": the same
divided by sqrt(d), so each set has total variance 1 whatever its width."""


@dataclass(frozen=True, eq=False)
class VariancePartition:
    """Result of ``variance_partitioning``; per-neuroid arrays are (n,) float64.

    Attributes
    ----------
    set_names : the feature sets, in the order given.
    r2 : held-out R^2 of the model of each union, keyed "A", "B", "A+B", ... (n,).
    components : Venn regions keyed "unique:A", "shared:A&B", "shared:A&B&C", ... (n,); for 3 sets
        "shared:A&B" is what A and B share and C does not. They sum to ``r2`` of the full union.
    alphas : penalty chosen per outer fold and neuroid for each union, (n_folds, n).
    neuroid_ids : the target's neuroid ids, in column order.
    n_stimuli, n_folds, scaling : what produced it.
    """

    set_names: tuple[str, ...]
    r2: dict[str, np.ndarray]
    components: dict[str, np.ndarray]
    alphas: dict[str, np.ndarray]
    neuroid_ids: tuple[str, ...]
    n_stimuli: int
    n_folds: int
    scaling: str

    @property
    def median_r2(self) -> dict[str, float]:
        """Median over neuroids of each union's R^2."""
        return {k: float(np.nanmedian(v)) for k, v in self.r2.items()}

    @property
    def median_components(self) -> dict[str, float]:
        """Median over neuroids of each component (need not sum to the full union's median)."""
        return {k: float(np.nanmedian(v)) for k, v in self.components.items()}

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per neuroid and quantity, columns ``neuroid``, ``kind`` ("r2" or
        "component"), ``name`` (union or component key), ``value``."""
        rows = [pd.DataFrame({"neuroid": list(self.neuroid_ids), "kind": kind, "name": key,
                              "value": values})
                for kind, table in (("r2", self.r2), ("component", self.components))
                for key, values in table.items()]
        return pd.concat(rows, ignore_index=True)

    def plot(self):
        """Bar chart of the median components; returns a ``matplotlib.figure.Figure`` (no pyplot
        state is touched: save it with ``fig.savefig(path)``)."""
        from matplotlib.figure import Figure

        med = self.median_components
        full = self.median_r2.get("+".join(self.set_names), float("nan"))
        fig = Figure(figsize=(2.6 + 1.0 * len(med), 3.6), layout="constrained")
        ax = fig.subplots()
        names = [k.replace("unique:", "unique to ").replace("shared:", "shared by ")
                 .replace("&", " & ") for k in med]
        colours = ["C0" if k.startswith("unique:") else "C1" for k in med]
        ax.bar(range(len(med)), list(med.values()), color=colours)
        ax.set_xticks(range(len(med)), names, rotation=30, ha="right", fontsize=8)
        ax.axhline(0.0, color="k", linewidth=0.8)
        if np.isfinite(full):
            ax.axhline(full, color="0.3", linestyle="--", linewidth=1,
                       label=f"all sets together: {full:.3f}")
            top = max(full, *med.values())
            ax.set_ylim(top=top + 0.3 * abs(top) + 1e-3)  # room for the legend above the line
            ax.legend(fontsize=7, loc="upper right", frameon=False)
        ax.set_ylabel("median held-out R$^2$ over neuroids", fontsize=8)
        ax.set_title(f"variance partitioning: {len(self.neuroid_ids)} neuroids, "
                     f"{self.n_stimuli} stimuli, {self.n_folds}-fold CV", fontsize=9)
        if any(v < 0 for v in med.values()):
            ax.set_xlabel("below 0: the sets suppress each other's prediction (or noise).\n"
                          "Medians are per component: the bars need not add up to the line.",
                          fontsize=6.5, color="0.3")
        return fig


def _union_key(names: tuple[str, ...], union: tuple[int, ...]) -> str:
    return "+".join(names[i] for i in union)


def _component_key(names: tuple[str, ...], region: tuple[int, ...]) -> str:
    kind = "unique" if len(region) == 1 else "shared"
    return f"{kind}:" + "&".join(names[i] for i in region)


def _components(r2_u: dict[frozenset, np.ndarray], m: int) -> dict[tuple[int, ...], np.ndarray]:
    """Venn regions from the R^2 of every union by Moebius inversion.

    With ``g(U) = R2(all) - R2(all minus U)`` (the variance lost without the sets in U, which is
    the sum of the regions inside U), the region of exactly the sets T is
    ``sum over non-empty U in T of (-1)**(|T| - |U|) g(U)``.
    """
    full = frozenset(range(m))

    def g(u: frozenset) -> np.ndarray:
        rest = full - u
        return r2_u[full] - (r2_u[rest] if rest else 0.0)

    out = {}
    for k in range(1, m + 1):
        for region in itertools.combinations(range(m), k):
            out[region] = sum((-1) ** (k - j) * g(frozenset(u))
                              for j in range(1, k + 1) for u in itertools.combinations(region, j))
    return out


def _check_sets(features) -> tuple[tuple[str, ...], list[np.ndarray], dict[str, tuple]]:
    """Names, (s, d_i) float64 arrays and, for sets that carry them (``Features``), stimulus ids."""
    if not isinstance(features, Mapping) or not 2 <= len(features) <= 3:
        got = f"{len(features)} set(s)" if isinstance(features, Mapping) else type(features).__name__
        raise InputError("features", "a dict of 2 or 3 named (s, d) feature sets", got,
                         "e.g. {'layer3': acts_sd, 'pixels': pixels_sd}; for more sets, partition "
                         "them in groups (7 unions for 3 sets, 15 for 4)")
    for name in features:
        if not isinstance(name, str) or not name or any(c in name for c in PARTITION_RESERVED):
            raise InputError("features", f"non-empty str keys without {' '.join(PARTITION_RESERVED)}",
                             repr(name), "rename the set (the characters build the result keys)")
    return named_sets(features)


def named_sets(features: Mapping) -> tuple[tuple[str, ...], list[np.ndarray], dict[str, tuple]]:
    """Names, (s, d_i) float64 arrays and, for sets that carry them (``Features``), their
    stimulus ids, after each set's checks (2-D, finite, not constant) and a common row count;
    shared by ``variance_partitioning`` and ``banded_ridge``."""
    names, xs, ids = [], [], {}
    for name, x in features.items():
        if not isinstance(name, str) or not name:
            raise InputError("features", "non-empty str keys", repr(name), "name every set")
        param = f"features[{name!r}]"
        if hasattr(x, "stimulus_ids") and hasattr(x, "values"):  # a Features object
            ids[name] = tuple(str(i) for i in x.stimulus_ids)
            x = x.values
        t = as_tensor(x, param, resolve_device("cpu"), ndim=(2,))
        check_features(t, param)
        if xs and len(t) != len(xs[0]):
            raise InputError(param, f"{len(xs[0])} stimuli (rows), as many as "
                             f"features[{names[0]!r}]", f"{len(t)}",
                             "extract every set for the same stimuli, in the same order")
        names.append(name)
        xs.append(t.numpy())
    return tuple(names), xs, ids


def _check_order(ids: dict[str, tuple], target: xr.DataArray) -> None:
    want = tuple(str(i) for i in target["stimulus"].values)
    for name, got in ids.items():
        if got != want:
            row = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                       min(len(got), len(want)))
            raise InputError(f"features[{name!r}]", "rows in the target's stimulus order",
                             f"stimulus ids differ from row {row} on", "reorder the rows with "
                             "cortexalign.neural.align_ids(features.stimulus_ids, "
                             "target['stimulus'].values)")


def check_sets_target(xs: list[np.ndarray], ids: dict[str, tuple], target, scaling: str,
                      n_folds, analysis: str) -> np.ndarray:
    """The (s, n) responses of ``target`` after the checks every multi-set encoding analysis
    makes (``variance_partitioning``, ``banded_ridge``): a known scaling, a responses target
    with as many stimuli as the sets' rows and, for ``Features`` sets, the same stimulus order
    (``ids``), and ``n_folds`` in 2..s. ``analysis`` names the caller in the messages."""
    if scaling not in SET_SCALINGS:
        raise UnknownNameError("set scaling", scaling, SET_SCALINGS)
    if not isinstance(target, xr.DataArray):
        raise InputError("target", "a responses DataArray (stimulus, neuroid[, repetition])",
                         type(target).__name__, f"{analysis} fits encoding models: pass "
                         "responses (make_responses / load_neural), not RDMs")
    if "stimulus" in target.dims and target.sizes["stimulus"] != len(xs[0]):
        raise InputError("features", f"{target.sizes['stimulus']} stimuli (rows), as many as the "
                         "target", f"{len(xs[0])}", "align features and target by stimulus_id "
                         "(cortexalign.neural.align_ids)")
    _, y_sn, _ = _check_inputs(xs[0], target)  # the ridge metric's checks of the responses
    _check_order(ids, target)
    s = len(y_sn)
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) \
            or not 2 <= n_folds <= s:
        raise InputError("n_folds", f"an int in 2..{s} (the number of stimuli)", repr(n_folds),
                         "e.g. n_folds=5")
    return y_sn


def _union_predictions(xs: list[np.ndarray], y_sn: np.ndarray, splits, scale, *, seed: int,
                       **fold_options) -> tuple[np.ndarray, np.ndarray]:
    """(s, n) held-out predictions of one union and its (n_folds, n) chosen penalties.

    ``cross_validated_predictions`` takes one fixed matrix, but the sets are scaled with each
    fold's training statistics, so its loop (same splits, inner seed ``seed + fold``) is run here
    over ``ENCODERS["ridge"]``.
    """
    pred_sn = np.full(y_sn.shape, np.nan)
    chosen = []
    for fold, (tr, te) in enumerate(splits):
        parts = [scale(x_sd[tr], x_sd[te]) for x_sd in xs]
        x_tr = np.concatenate([p[0] for p in parts], axis=1)
        x_te = np.concatenate([p[1] for p in parts], axis=1)
        pred_sn[te], a_n = ENCODERS["ridge"](x_tr, y_sn[tr], x_te, seed=seed + fold,
                                             **fold_options)
        chosen.append(a_n)
    return pred_sn, np.stack(chosen)


@sized_by(lambda features, target, **_: 5 * total_gram_work(features))
def variance_partitioning(features: Mapping[str, np.ndarray], target: xr.DataArray, *,
                          n_folds: int = 5, seed: int = 0, alphas=DEFAULT_ALPHAS,
                          inner_folds: int = 5, scaling: str = "zscore", solver: str = "eigh",
                          device=None) -> VariancePartition:
    """Unique and shared variance of 2 or 3 feature sets in cross-validated ridge encoding models.

    Parameters
    ----------
    features : {name: (s, d_i) array} for 2 or 3 sets (numpy, torch, or ``Features``, whose
        stimulus ids are then checked against the target's), rows in the target's stimulus order.
    target : responses (stimulus, neuroid[, repetition]), as the ``ridge`` metric takes them;
        repetitions are averaged.
    n_folds : outer folds over stimuli, shared by every union (shuffled with ``seed``).
    alphas : penalty grid searched per neuroid and union by ``inner_folds``-fold CV.
    scaling : a ``SET_SCALINGS`` name, applied to each set with training-fold statistics.
    solver : a ``RIDGE_SOLVERS`` name ("eigh", ours; or "himalaya").
    device : where the ridge solver runs (None: the default device).

    Returns
    -------
    VariancePartition: per-neuroid R^2 of every union, the Venn components (unclipped, may be
    negative with noise) and their medians, the chosen penalties; ``to_frame()`` for a table.

    References: Lescroart et al. (2015) Front. Comput. Neurosci. 9:135; de Heer et al. (2017)
    J. Neurosci. 37:6539.
    """
    names, xs, ids = _check_sets(features)
    y_sn = check_sets_target(xs, ids, target, scaling, n_folds, "variance partitioning")
    s = len(y_sn)
    dev = resolve_device(device)
    splits = list(KFold(int(n_folds), shuffle=True, random_state=seed).split(y_sn))
    r2_u, alphas_u = {}, {}
    for k in range(1, len(names) + 1):
        for union in itertools.combinations(range(len(names)), k):
            pred_sn, alphas_u[_union_key(names, union)] = _union_predictions(
                [xs[i] for i in union], y_sn, splits, SET_SCALINGS[scaling], seed=seed,
                device=dev, alphas=alphas, inner_folds=inner_folds,
                solver=solver)
            r2_u[frozenset(union)] = encoding_scores(y_sn, pred_sn)[1]
    comps = _components(r2_u, len(names))
    return VariancePartition(
        set_names=names,
        r2={_union_key(names, tuple(sorted(u))): v for u, v in r2_u.items()},
        components={_component_key(names, region): v for region, v in comps.items()},
        alphas=alphas_u, neuroid_ids=tuple(str(i) for i in target["neuroid"].values),
        n_stimuli=s, n_folds=int(n_folds), scaling=scaling)
