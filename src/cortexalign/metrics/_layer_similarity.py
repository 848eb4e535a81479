"""Model-vs-model layer similarity: every layer of network A against every layer of network B.

The heatmap of Kornblith, Norouzi, Lee & Hinton (2019, ICML, "Similarity of neural network
representations revisited", fig. 2-5), computed for all layer pairs at once instead of one
``cka()`` call per pair. Each measure is a plain function in ``LAYER_SIMILARITIES`` taking lists
of validated float64 (s, d_i) tensors and returning the (L_a, L_b) matrix:

- ``cka_linear``: biased HSIC of linear kernels, ``<K_i, L_j>_F`` for centred Grams. The pair
  products come from one of two engines, chosen per block of layers by a flop count: *grams*
  (row chunks of every layer's centred Gram, flattened, and one ``(L_a, c s) @ (c s, L_b)``
  product per chunk, accumulated) or *features* (``||X_i^T Y_j||_F^2`` from the product of the
  concatenated features, chunked over columns, squared and summed per layer pair). Layers
  wider than s go to the grams engine, narrower ones to the features engine (the 2 x 2 blocks).
- ``cka_linear_debiased``: Song, Smola, Gretton, Bedo & Borgwardt (2012, JMLR 13:1393) unbiased
  HSIC as in Nguyen, Raghu & Kornblith (2021, ICLR). With ``K~`` the Gram with its diagonal
  zeroed, the U-statistic combines ``<K~, L~>``, ``sum(K~) sum(L~)`` and ``<K~ 1, L~ 1>``; for
  centred features ``K 1 = 0``, so these are ``<K, L> - d_K.d_L``, ``tr K tr L`` and ``d_K.d_L``
  (``d`` the diagonals): the same pair products plus one ``(L_a, s) @ (s, L_b)`` product.
- ``cka_rbf``: Gaussian kernels with ``cka``'s bandwidth rule (``sigma_frac`` times the root
  median squared distance, ``_cka.rbf_gram``), centred, then one product of the flattened kernels
  (layers of A in groups; B's L_b centred kernels are held: 8 L_b s^2 bytes, the median needs
  each whole kernel).
- ``rsa``: per-layer RDMs (``_rdm.RDM_METHODS``, ``rdm_method``), upper triangles, compared by
  ``_compare.RDM_COMPARISONS`` (``compare``), which take all (m, k) pairs in one call (ranks and
  one matmul for spearman / pearson / cosine / rho_a; kendall_tau_a pair by pair).

``layer_similarity`` validates and returns an ``xarray.DataArray`` (layer_a, layer_b).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import numpy as np
import torch
import xarray as xr

from cortexalign.compute import sized_by, total_gram_work
from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics._cka import _center, _center_gram, rbf_gram
from cortexalign.metrics._cka_metric import DEBIASED, KORNBLITH_2019
from cortexalign.metrics._cka_metric import _check_options as _check_cka_options
from cortexalign.metrics._layer_bootstrap import bootstrap_layer_cka, check_bootstrap
from cortexalign.metrics._rsa_metric import _check_options as _check_rsa_options
from cortexalign.rdm import (
    as_tensor,
    check_features,
    check_varies,
    compare_vectors,
    mm_nt,
    rdm_tensor,
    upper_tri,
)

__all__ = ["LAYER_SIMILARITIES", "layer_similarity"]

_CHUNK_ELEMENTS = 2**25  # float64 elements per temporary block (256 MiB); one chunk -> syrk
NILI_2014 = ("Kriegeskorte, Mur & Bandettini (2008) Front Syst Neurosci 2:4; Nili et al. (2014) "
             "PLoS Comput Biol 10:e1003553")


# ------------------------------------------------------------------ all-pairs <K_i, L_j>_F engines

def _mm_nt_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> None:
    """``out = a @ b.T`` with no temporary (NumPy's BLAS on the CPU, as ``_rdm.mm_nt``)."""
    if a.device.type == "cpu":
        np.matmul(a.numpy(), b.numpy().T, out=out.numpy())
    else:
        torch.mm(a, b.T, out=out)


def _pairs_by_grams(xs_a: list[torch.Tensor], xs_b: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """(L_a, L_b) ``<X_i X_i^T, Y_j Y_j^T>_F``: rows of every Gram, a chunk at a time, and one
    product of the flattened chunks per chunk; memory (L_a + L_b) c s for c rows. Also returns
    the self terms ``||X_i X_i^T||_F^2`` of both sides, which the chunks give for free."""
    s, same = xs_a[0].shape[0], xs_a is xs_b
    rows = max(1, _CHUNK_ELEMENTS // (s * (len(xs_a) + (0 if same else len(xs_b)))))
    out = torch.zeros(len(xs_a), len(xs_b), dtype=xs_a[0].dtype, device=xs_a[0].device)
    self_a = torch.zeros(len(xs_a), dtype=out.dtype, device=out.device)
    self_b = self_a if same else torch.zeros(len(xs_b), dtype=out.dtype, device=out.device)

    def flat(xs: list[torch.Tensor], r0: int, r1: int, norms: torch.Tensor) -> torch.Tensor:
        k = torch.empty(len(xs), (r1 - r0) * s, dtype=out.dtype, device=out.device)
        for i, x in enumerate(xs):  # one Gram row block per layer
            _mm_nt_into(x[r0:r1], x, k[i].view(r1 - r0, s))
        norms += (k * k).sum(dim=1)
        return k

    for r0 in range(0, s, rows):
        r1 = min(s, r0 + rows)
        ka = flat(xs_a, r0, r1, self_a)
        out += mm_nt(ka, ka if same else flat(xs_b, r0, r1, self_b))
    return out, self_a, self_b


def _segments(xs: list[torch.Tensor]) -> torch.Tensor:
    widths = torch.tensor([x.shape[1] for x in xs], device=xs[0].device)
    return torch.repeat_interleave(torch.arange(len(xs), device=xs[0].device), widths)


def _pairs_by_features(xs_a: list[torch.Tensor],
                       xs_b: list[torch.Tensor]) -> tuple[torch.Tensor, None, None]:
    """(L_a, L_b) ``||X_i^T Y_j||_F^2`` from ``Z_a^T Z_b`` of the concatenated features, in chunks
    of columns of ``Z_a``; squares summed per (layer, layer) block by two segment sums. No self
    terms (``None``): ``_self_dots`` computes them."""
    za, zb = torch.cat(xs_a, dim=1), torch.cat(xs_b, dim=1)
    seg_a, seg_b = _segments(xs_a), _segments(xs_b)
    out = torch.zeros(len(xs_a), len(xs_b), dtype=za.dtype, device=za.device)
    step = max(1, _CHUNK_ELEMENTS // zb.shape[1])
    for c0 in range(0, za.shape[1], step):
        m = mm_nt(za[:, c0:c0 + step].T, zb.T)  # (c, D_b) cross-covariances
        per_b = torch.zeros(m.shape[0], len(xs_b), dtype=m.dtype, device=m.device)
        per_b.index_add_(1, seg_b, m.mul_(m))
        out.index_add_(0, seg_a[c0:c0 + step], per_b)
    return out, None, None


def _cheaper_engine(s: int, xs_a: list[torch.Tensor], xs_b: list[torch.Tensor]) -> Callable:
    da, db = sum(x.shape[1] for x in xs_a), sum(x.shape[1] for x in xs_b)
    gram_flops = s * s * (da + (0 if xs_a is xs_b else db) + len(xs_a) * len(xs_b))
    return _pairs_by_grams if gram_flops < s * da * db else _pairs_by_features


def _linear_pairs(xs_a: list[torch.Tensor], xs_b: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """(L_a, L_b) ``<K_i, L_j>_F`` of linear kernels and the self terms ``<K_i, K_i>``,
    ``<L_j, L_j>``: layers split into narrow (d <= s) and wide (d > s), each of the <= 4 blocks
    computed by the cheaper engine; self terms no Gram block gave come from ``_self_dots``."""
    s, same = xs_a[0].shape[0], xs_a is xs_b
    out = torch.empty(len(xs_a), len(xs_b), dtype=xs_a[0].dtype, device=xs_a[0].device)
    self_a = torch.full((len(xs_a),), float("nan"), dtype=out.dtype, device=out.device)
    self_b = self_a if same else torch.full((len(xs_b),), float("nan"), dtype=out.dtype,
                                            device=out.device)

    def split(xs: list[torch.Tensor]) -> list[list[int]]:
        groups = [[i for i, x in enumerate(xs) if x.shape[1] <= s],
                  [i for i, x in enumerate(xs) if x.shape[1] > s]]
        return [g for g in groups if g]

    groups_a = split(xs_a)
    groups_b = groups_a if same else split(xs_b)
    for ga in groups_a:
        sub_a = [xs_a[i] for i in ga]
        for gb in groups_b:
            sub_b = sub_a if (same and ga is gb) else [xs_b[j] for j in gb]
            block, sa, sb = _cheaper_engine(s, sub_a, sub_b)(sub_a, sub_b)
            out[torch.tensor(ga)[:, None], torch.tensor(gb)[None, :]] = block
            if sa is not None:
                self_a[ga], self_b[gb] = sa, sb
    for xs, norms in ((xs_a, self_a), (xs_b, self_b)):
        todo = [i for i in range(len(xs)) if bool(torch.isnan(norms[i]))]
        if todo:
            norms[todo] = _self_dots([xs[i] for i in todo])
    return out, self_a, self_b


def _self_dots(xs: list[torch.Tensor]) -> torch.Tensor:
    """(L,) ``||X^T X||_F^2 = ||X X^T||_F^2``, each by the smaller of the two products."""
    def one(x: torch.Tensor) -> torch.Tensor:
        g = mm_nt(x.T, x.T) if x.shape[1] <= x.shape[0] else mm_nt(x, x)
        return (g * g).sum()

    return torch.stack([one(x) for x in xs])


def _normalise(hxy: torch.Tensor, hxx: torch.Tensor, hyy: torch.Tensor) -> torch.Tensor:
    """``hxy / sqrt(hxx hyy)``; NaN where a self-HSIC is <= 0 (debiased CKA of few stimuli)."""
    denom = hxx[:, None] * hyy[None, :]
    return torch.where(denom > 0, hxy / denom.clamp_min(1e-300).sqrt(),
                       torch.full_like(hxy, float("nan")))


# ------------------------------------------------------------------------------ the measures

def sim_cka_linear(xs_a: list[torch.Tensor], xs_b: list[torch.Tensor] | None) -> torch.Tensor:
    """Linear CKA (biased HSIC; the ``1/(s-1)^2`` cancels) of every layer pair."""
    ca = [_center(x) for x in xs_a]
    cb = ca if xs_b is None else [_center(x) for x in xs_b]
    kl, kk, ll = _linear_pairs(ca, cb)
    if xs_b is None:
        kl = (kl + kl.T) / 2
        return _normalise(kl, torch.diagonal(kl), torch.diagonal(kl))
    return _normalise(kl, kk, ll)


def _u_statistic(kl: torch.Tensor, dd: torch.Tensor, tk: torch.Tensor, tl: torch.Tensor,
                 s: int) -> torch.Tensor:
    """Song et al. (2012) eq. 5 for centred Grams, from ``<K, L>``, ``d_K.d_L`` and the traces
    (broadcast: pairs or self terms)."""
    return (kl - dd + tk * tl / ((s - 1) * (s - 2)) - 2.0 / (s - 2) * dd) / (s * (s - 3))


def sim_cka_linear_debiased(xs_a: list[torch.Tensor],
                            xs_b: list[torch.Tensor] | None) -> torch.Tensor:
    """Debiased linear CKA (unbiased HSIC, Song et al. 2012; Nguyen et al. 2021) of every pair."""
    s = xs_a[0].shape[0]
    ca = [_center(x) for x in xs_a]
    cb = ca if xs_b is None else [_center(x) for x in xs_b]
    da = torch.stack([(x * x).sum(dim=1) for x in ca])  # (L_a, s) diagonals of the Grams
    db = da if xs_b is None else torch.stack([(y * y).sum(dim=1) for y in cb])
    ta, tb = da.sum(dim=1), db.sum(dim=1)
    kl, kk, ll = _linear_pairs(ca, cb)
    if xs_b is None:
        kl = (kl + kl.T) / 2
    hxy = _u_statistic(kl, mm_nt(da, db), ta[:, None], tb[None, :], s)
    if xs_b is None:
        hxy = (hxy + hxy.T) / 2
        return _normalise(hxy, torch.diagonal(hxy), torch.diagonal(hxy))
    hxx = _u_statistic(kk, (da * da).sum(1), ta, ta, s)
    hyy = _u_statistic(ll, (db * db).sum(1), tb, tb, s)
    return _normalise(hxy, hxx, hyy)


def sim_cka_rbf(xs_a: list[torch.Tensor], xs_b: list[torch.Tensor] | None,
                sigma_frac: float = 1.0) -> torch.Tensor:
    """RBF CKA (biased HSIC) of every pair: the centred kernels of B stacked, those of A in
    groups, one product per group."""
    s = xs_a[0].shape[0]

    def kernels(xs: list[torch.Tensor]) -> torch.Tensor:
        k = torch.empty(len(xs), s * s, dtype=xs[0].dtype, device=xs[0].device)
        for i, x in enumerate(xs):
            k[i] = _center_gram(rbf_gram(x, sigma_frac)).reshape(-1)
        return k

    kb = kernels(xs_a if xs_b is None else xs_b)
    if xs_b is None:
        kl = mm_nt(kb, kb)
        kl = (kl + kl.T) / 2
        return _normalise(kl, torch.diagonal(kl), torch.diagonal(kl))
    group = max(1, _CHUNK_ELEMENTS // (s * s))
    kl, hxx = [], []
    for g in range(0, len(xs_a), group):
        ka = kernels(xs_a[g:g + group])
        kl.append(mm_nt(ka, kb))
        hxx.append((ka * ka).sum(dim=1))
    return _normalise(torch.cat(kl), torch.cat(hxx), (kb * kb).sum(dim=1))


def sim_rsa(xs_a: list[torch.Tensor], xs_b: list[torch.Tensor] | None,
            rdm_method: str = "correlation", compare: str = "spearman") -> torch.Tensor:
    """RSA of every pair: each layer's RDM upper triangle, then ``compare`` on all pairs."""
    def vectors(xs: list[torch.Tensor], side: str) -> torch.Tensor:
        vec = torch.stack([upper_tri(rdm_tensor(x, rdm_method)) for x in xs])
        check_varies(vec, f"feats_{side} ({rdm_method} RDMs)")
        return vec

    va = vectors(xs_a, "a")
    if xs_b is None:
        sim = compare_vectors(va, va, compare)
        return (sim + sim.T) / 2
    return compare_vectors(va, vectors(xs_b, "b"), compare)


LAYER_SIMILARITIES: dict[str, Callable[..., torch.Tensor]] = {
    "cka_linear": sim_cka_linear,
    "cka_linear_debiased": sim_cka_linear_debiased,
    "cka_rbf": sim_cka_rbf,
    "rsa": sim_rsa,
}
"""Name -> ``fn(xs_a, xs_b_or_None, **options) -> (L_a, L_b)`` on float64 (s, d_i) tensors
(``None``: A against itself, symmetric)."""

_CITATIONS = {"cka_linear": KORNBLITH_2019, "cka_linear_debiased": DEBIASED,
              "cka_rbf": KORNBLITH_2019, "rsa": NILI_2014}


def check_layer_metric(metric: str, options: dict) -> dict:
    """The options completed with their defaults, or the metric's own errors."""
    if metric not in LAYER_SIMILARITIES:
        raise UnknownNameError("layer-similarity metric", str(metric), LAYER_SIMILARITIES)
    if metric == "rsa":
        unknown = sorted(set(options) - {"rdm_method", "compare"})
        if unknown:
            raise InputError("options", "rsa options rdm_method and compare", f"{unknown}",
                             "remove them (e.g. rdm_method='correlation', compare='spearman')")
        full = {"rdm_method": "correlation", "compare": "spearman", **options}
        _check_rsa_options(full["rdm_method"], full["compare"], None)
        return full
    kind = metric.removeprefix("cka_")
    _check_cka_options(kind, options)
    return {"sigma_frac": float(options.get("sigma_frac", 1.0))} if kind == "rbf" else {}


def _layers(feats, name: str, dev: torch.device, need: int) -> tuple[list[str], list]:
    """Layer names and float64 (s, d) tensors of a ``{layer: (s, d) array or Features}`` dict."""
    if not isinstance(feats, Mapping) or not feats:
        raise InputError(name, "a non-empty dict layer name -> (s, d) features",
                         type(feats).__name__ if not isinstance(feats, Mapping) else "an empty dict",
                         "pass e.g. {'blocks.3': acts_sd, ...} or extract_features(...)")
    bad = [k for k in feats if not isinstance(k, str)]
    if bad:
        raise InputError(name, "str layer names as keys", f"keys {bad[:3]}",
                         "name each layer, e.g. {'layer3': acts_sd}")
    xs = []
    for layer, x in feats.items():
        values = getattr(x, "values", x) if not isinstance(x, (np.ndarray, torch.Tensor)) else x
        t = as_tensor(values, f"{name}[{layer!r}]", dev, ndim=(2,))
        check_features(t, f"{name}[{layer!r}]", min_stimuli=need)
        xs.append(t)
    return list(feats), xs


def _check_same_stimuli(named: list[tuple[str, torch.Tensor]]) -> None:
    first, s0 = named[0][0], named[0][1].shape[0]
    for layer, x in named[1:]:
        if x.shape[0] != s0:
            raise InputError(layer, f"{s0} stimuli (rows), as many as {first}",
                             f"{x.shape[0]}", "extract every layer for the same stimuli, "
                             "in the same order (align them by stimulus_id)")


@sized_by(lambda feats_a, feats_b=None, *_, **__: total_gram_work(feats_a, feats_b))
def layer_similarity(feats_a: Mapping, feats_b: Mapping | None = None, metric: str = "cka_linear",
                     *, device: str | torch.device | None = None, n_bootstrap: int = 0,
                     seed: int = 0, ci_level: float = 0.95, **options) -> xr.DataArray:
    """Similarity of every layer of A with every layer of B (Kornblith et al. 2019's heatmap).

    Parameters
    ----------
    feats_a : {layer: (s, d_i) features} of network A (arrays, tensors or ``Features``); widths
        may differ, every layer has the same s stimuli in the same row order.
    feats_b : the same for network B over the same stimuli; ``None``: A against itself (the
        result is symmetric, and its diagonal is 1 for the CKA measures).
    metric : a key of ``LAYER_SIMILARITIES``: ``cka_linear``, ``cka_linear_debiased``,
        ``cka_rbf`` or ``rsa``.
    device : where to compute (``None``: CUDA when available); float64 throughout.
    **options : ``sigma_frac``, the ``cka_rbf`` bandwidth as a fraction of the root median
        squared distance (1.0); ``rdm_method`` and ``compare``, ``rsa``'s RDM method
        (``correlation``) and comparison (``spearman``), names of ``RDM_METHODS`` and
        ``RDM_COMPARISONS``.
    n_bootstrap, seed, ci_level : CKA measures: percentile intervals over stimulus resamples
        (``_layer_bootstrap``), as coordinates ``ci_low`` / ``ci_high`` (layer_a, layer_b);
        0 (default): none.

    Returns
    -------
    DataArray (layer_a, layer_b) of float64, entry (i, j) equal to ``cka(A_i, B_j, kind)`` (or
    ``compare_rdms(compute_rdm(A_i), compute_rdm(B_j))``) up to rounding; attrs ``metric``,
    ``options`` (JSON), ``n_stimuli`` and ``citation``. Debiased CKA is NaN where a self-HSIC is
    <= 0 (few stimuli), as in ``cka``.

    Raises
    ------
    UnknownNameError for an unknown metric, RDM method or comparison; InputError for options
    the metric does not take, empty or non-dict inputs, non-finite or constant features, and
    layers with different stimulus counts.
    """
    options = check_layer_metric(metric, options)
    check_bootstrap(metric, n_bootstrap, seed, ci_level)
    dev = resolve_device(device)
    need = 4 if metric == "cka_linear_debiased" else 3
    names_a, xs_a = _layers(feats_a, "feats_a", dev, need)
    named = [(f"feats_a[{n!r}]", x) for n, x in zip(names_a, xs_a, strict=True)]
    names_b, xs_b = names_a, None
    if feats_b is not None:
        names_b, xs_b = _layers(feats_b, "feats_b", dev, need)
        named += [(f"feats_b[{n!r}]", x) for n, x in zip(names_b, xs_b, strict=True)]
    _check_same_stimuli(named)
    sim_ab = LAYER_SIMILARITIES[metric](xs_a, xs_b, **options)
    coords: dict = {"layer_a": list(names_a), "layer_b": list(names_b)}
    attrs = {"metric": metric, "options": json.dumps(options), "n_stimuli": int(xs_a[0].shape[0]),
             "citation": _CITATIONS[metric]}
    if n_bootstrap:
        _, lo, hi = bootstrap_layer_cka(metric, xs_a, xs_b, options, int(n_bootstrap), int(seed),
                                        float(ci_level))
        coords |= {"ci_low": (("layer_a", "layer_b"), lo), "ci_high": (("layer_a", "layer_b"), hi)}
        attrs |= {"n_bootstrap": int(n_bootstrap), "seed": int(seed), "ci_level": float(ci_level)}
    return xr.DataArray(sim_ab.cpu().numpy(), dims=("layer_a", "layer_b"), coords=coords,
                        name=metric, attrs=attrs)
