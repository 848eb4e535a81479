"""Matching SAE units to voxels (SAE-BrainMap, arXiv 2506.11123; METHODS.md section 2).

- Per-image unit activation: a[i, j] = mean over the patch tokens of image i of z_j (CLS dropped).
- Similarity S[l, j, v] = Pearson r over images between unit j of layer l and voxel v, i.e. the
  cosine of the centred columns (``cosine`` skips the centring).
- Voxel dictionary: for each voxel, the argmax of S over all layers and units (the seed's rule; one
  unit may serve many voxels), and optionally a one-to-one (Hungarian) assignment.
- Significance (our addition, not the seed's): permuting images gives, per voxel, a null of the best
  r over all units, so the p-value controls the family-wise error over units.

S for 12 layers x 12,288 units x 20,000 voxels is 2.9e9 numbers (11.8 GB in float32), so it is
never materialised: blocks of (unit chunk x voxel chunk) are computed by float32 matmuls of columns
standardised in float64, and reduced on the fly (max, argmax, top-m, sums in float64).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError

__all__ = ["SIMILARITIES", "image_unit_activations", "similarity", "MatchResult",
           "match_units_to_voxels", "VoxelDictionary", "voxel_dictionary", "one_to_one_dictionary",
           "PermutationResult", "permutation_test_best_match"]


def _normalise(a_sn: np.ndarray, ref_sn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm columns of ``a_sn``; a column whose norm is at rounding level relative to the
    magnitude of ``ref_sn`` (the uncentred data) is constant and set to 0."""
    norm_n = np.sqrt((a_sn**2).sum(0))
    scale_n = np.sqrt((ref_sn**2).sum(0))
    constant_n = norm_n <= 1e-10 * scale_n + 1e-300
    return np.where(constant_n, 0.0, a_sn / np.where(constant_n, 1.0, norm_n)), constant_n


def _centred_unit(a_sn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _normalise(a_sn - a_sn.mean(0, keepdims=True), a_sn)


def _unit(a_sn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _normalise(a_sn, a_sn)


#: Column normalisations whose dot products are the similarity: name -> fn(a_sn float64) ->
#: (unit-norm columns, mask of constant columns).
SIMILARITIES: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "pearson": _centred_unit,
    "cosine": _unit,
}


def _prepare(a_sn: np.ndarray, method: str, dev: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    if method not in SIMILARITIES:
        raise UnknownNameError("similarity", method, list(SIMILARITIES))
    normed, constant = SIMILARITIES[method](np.asarray(a_sn, dtype=np.float64))
    return torch.from_numpy(normed.astype(np.float32)).to(dev), constant


@torch.no_grad()
def image_unit_activations(sae: torch.nn.Module, acts_std, num_prefix_tokens: int,
                           images_per_batch: int = 16, device: str | torch.device | None = None
                           ) -> np.ndarray:
    """Per-image SAE unit activations: the mean over patch tokens of z (prefix tokens dropped).

    Parameters
    ----------
    sae : a trained ``SparseAutoencoder`` (put in eval mode here).
    acts_std : (s, t, d) token activations (numpy, torch or a lazily read zarr array).
    num_prefix_tokens : leading CLS/register tokens to exclude (1 for CLIP ViT-B/16).

    Returns
    -------
    (s, k) float32 array.
    """
    from cortexalign.sae.stream import token_chunks

    dev = resolve_device(device)
    sae = sae.to(dev).eval()
    s, t = acts_std.shape[:2]
    out = np.empty((s, sae.d_sae), dtype=np.float32)
    start = 0
    for chunk in token_chunks(acts_std, num_prefix_tokens, images_per_batch):
        b = chunk.shape[0] // (t - num_prefix_tokens)
        z_btk = sae.encode(chunk.to(dev)).float().view(b, t - num_prefix_tokens, -1)
        out[start:start + b] = z_btk.mean(1).cpu().numpy()
        start += b
    return out


def _check_pair(units_sk: np.ndarray, voxels_sn: np.ndarray, name: str) -> None:
    if units_sk.ndim != 2 or voxels_sn.ndim != 2 or units_sk.shape[0] != voxels_sn.shape[0]:
        raise InputError(name, f"(s, k) unit activations over the same s images as voxels {voxels_sn.shape}",
                         f"shape {units_sk.shape}", "compute both over the same images, same order")
    for arr, what in ((units_sk, name), (voxels_sn, "voxels")):
        if not np.isfinite(arr).all():
            raise InputError(what, "finite values", "NaN/Inf values",
                             "drop or impute them (the fMRI loaders exclude such voxels)")


def similarity(units_sk: np.ndarray, voxels_sn: np.ndarray, method: str = "pearson",
               device: str | torch.device | None = None) -> np.ndarray:
    """(k, n) similarity of every unit to every voxel across the s images (one layer, in memory).

    Constant units or voxels get r = 0. For many layers and voxels use ``match_units_to_voxels``.
    """
    units_sk, voxels_sn = np.asarray(units_sk), np.asarray(voxels_sn)
    _check_pair(units_sk, voxels_sn, "units_sk")
    dev = resolve_device(device)
    u, _ = _prepare(units_sk, method, dev)
    v, _ = _prepare(voxels_sn, method, dev)
    return (u.T @ v).cpu().numpy()


@dataclass(frozen=True, eq=False)
class MatchResult:
    """Reductions of S[l, j, v] over units and layers (S itself is never stored).

    Attributes
    ----------
    layers : the l layer names, in order.
    best_layer_n, best_unit_n, best_r_n : (n,) the argmax over all layers and units per voxel.
    max_r_ln : (l, n) best r per layer and voxel.
    mean_r_ln : (l, n) mean r over the non-constant units of each layer.
    top_layer_nm, top_unit_nm, top_r_nm : (n, m) the m best (layer, unit) per voxel, best first.
    roi_names : the R ROI labels (empty without ``roi``).
    roi_mean_r : per layer, (k_l, R) mean r of each unit over the voxels of each ROI (empty
        without ROI labels).
    n_constant_units_l : (l,) units constant over images (r set to 0): typically dead latents.
    voxel_ids : the n voxel ids. method : the similarity.
    """

    layers: tuple[str, ...]
    best_layer_n: np.ndarray
    best_unit_n: np.ndarray
    best_r_n: np.ndarray
    max_r_ln: np.ndarray
    mean_r_ln: np.ndarray
    top_layer_nm: np.ndarray
    top_unit_nm: np.ndarray
    top_r_nm: np.ndarray
    roi_names: tuple[str, ...]
    roi_mean_r: tuple[np.ndarray, ...]
    n_constant_units_l: np.ndarray
    voxel_ids: tuple[str, ...]
    method: str


def _voxel_inputs(voxels) -> tuple[np.ndarray, tuple[str, ...], np.ndarray | None]:
    if hasattr(voxels, "dims") and hasattr(voxels, "coords"):  # xarray responses
        if voxels.dims[:2] != ("stimulus", "neuroid") or voxels.ndim != 2:
            raise InputError("voxels", "responses with dims ('stimulus', 'neuroid')",
                             f"dims {voxels.dims}", "average repetitions first (.mean('repetition'))")
        roi = np.asarray(voxels["roi"].values).astype(str) if "roi" in voxels.coords else None
        return np.asarray(voxels.values, np.float64), tuple(map(str, voxels["neuroid"].values)), roi
    arr = np.asarray(voxels, dtype=np.float64)
    return arr, tuple(f"v{i}" for i in range(arr.shape[-1] if arr.ndim == 2 else 0)), None


def _blocks(u_sk: torch.Tensor, v_sn: torch.Tensor, unit_chunk: int, voxel_chunk: int
            ) -> Iterator[tuple[int, int, torch.Tensor]]:
    for v0 in range(0, v_sn.shape[1], voxel_chunk):
        v = v_sn[:, v0:v0 + voxel_chunk]
        for u0 in range(0, u_sk.shape[1], unit_chunk):
            yield u0, v0, u_sk[:, u0:u0 + unit_chunk].T @ v


@torch.no_grad()
def match_units_to_voxels(units: Mapping[str, np.ndarray], voxels, method: str = "pearson",
                          roi: Sequence[str] | None = None, top_m: int = 5,
                          unit_chunk: int = 4096, voxel_chunk: int = 8192,
                          device: str | torch.device | None = None) -> MatchResult:
    """Similarity of every unit of every layer to every voxel, reduced in chunks.

    Parameters
    ----------
    units : layer name -> (s, k_l) per-image unit activations (``image_unit_activations``).
    voxels : (s, n) array, or responses (``DataArray`` (stimulus, neuroid)); rows = the same images.
    method : a name in ``SIMILARITIES`` (``pearson``, the seed's; ``cosine``).
    roi : n ROI labels (default: the responses' ``roi`` coordinate, if any); "" = none.
    top_m : candidates kept per voxel (used by ``one_to_one_dictionary``).
    unit_chunk, voxel_chunk : block size of the float32 matmuls.
    device : where the matmuls run (None: CUDA when present).
    """
    vox_sn, voxel_ids, roi_coord = _voxel_inputs(voxels)
    if not units:
        raise InputError("units", "at least one layer of unit activations", "an empty mapping",
                         "pass {layer: (s, k) activations}")
    roi = roi_coord if roi is None else np.asarray(roi).astype(str)
    for name, a in units.items():
        _check_pair(np.asarray(a), vox_sn, f"units[{name!r}]")
    dev = resolve_device(device)
    v_sn, constant_v = _prepare(vox_sn, method, dev)
    if constant_v.any():
        raise InputError("voxels", "voxels whose responses vary over images",
                         f"{int(constant_v.sum())} constant voxels (first: {voxel_ids[int(np.argmax(constant_v))]!r})",
                         "exclude them (the fMRI loaders do so and report the count)")
    n, layers = v_sn.shape[1], tuple(units)
    roi_names: tuple[str, ...] = ()
    onehot_nr = None
    if roi is not None:
        if len(roi) != n:
            raise InputError("roi", f"{n} labels (one per voxel)", f"{len(roi)}", "give one per voxel")
        roi_names = tuple(sorted(set(roi) - {""}))
        onehot = np.stack([roi == r for r in roi_names], 1).astype(np.float64)
        onehot_nr = torch.from_numpy(onehot / np.maximum(onehot.sum(0), 1)).to(dev)
    m = max(1, top_m)
    top_r = torch.full((n, m), -torch.inf, device=dev)
    top_g = torch.zeros((n, m), dtype=torch.long, device=dev)  # global unit index
    max_r_ln = np.empty((len(layers), n), np.float32)
    mean_r_ln = np.empty((len(layers), n), np.float64)
    roi_lkr, n_const, offsets = [], [], np.cumsum([0] + [np.shape(units[k])[1] for k in layers])
    for li, name in enumerate(layers):
        u_sk, const_k = _prepare(units[name], method, dev)
        n_const.append(int(const_k.sum()))
        sum_n = torch.zeros(n, dtype=torch.float64, device=dev)
        lmax_n = torch.full((n,), -torch.inf, device=dev)
        roi_kr = torch.zeros((u_sk.shape[1], len(roi_names)), dtype=torch.float64, device=dev)
        for u0, v0, r_kn in _blocks(u_sk, v_sn, unit_chunk, voxel_chunk):
            sl = slice(v0, v0 + r_kn.shape[1])
            sum_n[sl] += r_kn.double().sum(0)
            lmax_n[sl] = torch.maximum(lmax_n[sl], r_kn.max(0).values)
            vals, idx = r_kn.topk(min(m, r_kn.shape[0]), dim=0)
            cand_r = torch.cat([top_r[sl], vals.T], 1)
            cand_g = torch.cat([top_g[sl], idx.T + int(offsets[li]) + u0], 1)
            best, pos = cand_r.topk(m, dim=1)
            top_r[sl], top_g[sl] = best, cand_g.gather(1, pos)
            if onehot_nr is not None:
                roi_kr[u0:u0 + r_kn.shape[0]] += r_kn.double() @ onehot_nr[sl]
        max_r_ln[li] = lmax_n.cpu().numpy()
        mean_r_ln[li] = (sum_n / max(1, u_sk.shape[1] - n_const[-1])).cpu().numpy()
        roi_lkr.append(roi_kr.cpu().numpy().astype(np.float32))
    top_g_np, top_r_np = top_g.cpu().numpy(), top_r.cpu().numpy()
    top_layer = np.searchsorted(offsets, top_g_np, side="right") - 1
    top_unit = top_g_np - offsets[top_layer]
    top_layer[~np.isfinite(top_r_np)], top_unit[~np.isfinite(top_r_np)] = -1, -1
    return MatchResult(
        layers=layers, best_layer_n=top_layer[:, 0], best_unit_n=top_unit[:, 0],
        best_r_n=top_r_np[:, 0], max_r_ln=max_r_ln, mean_r_ln=mean_r_ln,
        top_layer_nm=top_layer, top_unit_nm=top_unit, top_r_nm=top_r_np, roi_names=roi_names,
        roi_mean_r=tuple(roi_lkr) if roi_names else (),
        n_constant_units_l=np.asarray(n_const), voxel_ids=voxel_ids, method=method)


@dataclass(frozen=True, eq=False)
class VoxelDictionary:
    """One (layer, unit, r) per voxel; layer = -1 where a voxel got no unit (one-to-one only)."""

    layers: tuple[str, ...]
    layer_n: np.ndarray
    unit_n: np.ndarray
    r_n: np.ndarray
    voxel_ids: tuple[str, ...]
    rule: str

    def layer_names(self) -> list[str]:
        """The best unit's layer name per voxel ('' where none)."""
        return [self.layers[i] if i >= 0 else "" for i in self.layer_n]


def voxel_dictionary(match: MatchResult) -> VoxelDictionary:
    """The seed's dictionary: each voxel's best unit over all layers (argmax of S)."""
    return VoxelDictionary(match.layers, match.best_layer_n, match.best_unit_n, match.best_r_n,
                           match.voxel_ids, "argmax")


def one_to_one_dictionary(units: Mapping[str, np.ndarray], voxels, match: MatchResult,
                          device: str | torch.device | None = None) -> VoxelDictionary:
    """A stricter dictionary: each unit serves at most one voxel (Hungarian assignment).

    The candidates are the union of every voxel's ``top_m`` units from ``match``; the assignment
    maximises the summed similarity (``scipy.optimize.linear_sum_assignment``). With fewer
    candidates than voxels, the voxels left over get layer = unit = -1 and r = NaN.
    """
    from scipy.optimize import linear_sum_assignment

    vox_sn, _, _ = _voxel_inputs(voxels)
    pairs = np.unique(np.stack([match.top_layer_nm.ravel(), match.top_unit_nm.ravel()], 1), axis=0)
    pairs = pairs[pairs[:, 0] >= 0]
    cand_sc = np.stack([np.asarray(units[match.layers[li]])[:, ui] for li, ui in pairs], 1)
    r_cn = similarity(cand_sc, vox_sn, match.method, device)
    rows, cols = linear_sum_assignment(r_cn, maximize=True)
    n = vox_sn.shape[1]
    layer_n, unit_n, r_n = np.full(n, -1), np.full(n, -1), np.full(n, np.nan, np.float32)
    layer_n[cols], unit_n[cols], r_n[cols] = pairs[rows, 0], pairs[rows, 1], r_cn[rows, cols]
    return VoxelDictionary(match.layers, layer_n, unit_n, r_n, match.voxel_ids, "one_to_one")


@dataclass(frozen=True, eq=False)
class PermutationResult:
    """Permutation test of each voxel's best match (an addition to the seed).

    observed_n : (n,) best r over all units; p_n : (n,) p-value, FWE-controlled over units;
    p_fwe_n : (n,) p-value FWE-controlled over units and voxels (max over both); null_max_pn :
    (P, n) the null best r per permutation.
    """

    observed_n: np.ndarray
    p_n: np.ndarray
    p_fwe_n: np.ndarray
    null_max_pn: np.ndarray
    n_permutations: int


@torch.no_grad()
def permutation_test_best_match(units: Mapping[str, np.ndarray], voxels, n_permutations: int = 1000,
                                method: str = "pearson", seed: int = 0, unit_chunk: int = 4096,
                                voxel_chunk: int = 8192, device: str | torch.device | None = None
                                ) -> PermutationResult:
    """Null of the best unit-voxel r under shuffled image labels (max statistic over units).

    Each permutation shuffles the image order of the voxels (one permutation for all voxels, so
    their correlations are kept) and recomputes the best r over every unit of every layer:
    p = (1 + #{null >= observed}) / (1 + P). Cost: P passes over all units; on real data restrict
    ``units`` to the candidate units (e.g. the dictionary's) or use a GPU.
    """
    if n_permutations < 1:
        raise InputError("n_permutations", "a positive integer", str(n_permutations),
                         "use e.g. 1000")
    vox_sn, _, _ = _voxel_inputs(voxels)
    for name, a in units.items():
        _check_pair(np.asarray(a), vox_sn, f"units[{name!r}]")
    dev = resolve_device(device)
    prepared = [_prepare(units[k], method, dev)[0] for k in units]
    rng = np.random.default_rng(seed)

    def best(v_sn: torch.Tensor) -> torch.Tensor:
        out = torch.full((v_sn.shape[1],), -torch.inf, device=dev)
        for u_sk in prepared:
            for _, v0, r_kn in _blocks(u_sk, v_sn, unit_chunk, voxel_chunk):
                sl = slice(v0, v0 + r_kn.shape[1])
                out[sl] = torch.maximum(out[sl], r_kn.max(0).values)
        return out

    v_sn, _ = _prepare(vox_sn, method, dev)
    observed = best(v_sn)
    null = torch.empty((n_permutations, v_sn.shape[1]), device=dev)
    for p in range(n_permutations):
        perm = torch.from_numpy(rng.permutation(v_sn.shape[0])).to(dev)
        null[p] = best(v_sn[perm])  # centring and norms are permutation-invariant
    obs, nul = observed.cpu().numpy(), null.cpu().numpy()
    p_n = (1 + (nul >= obs[None]).sum(0)) / (1 + n_permutations)
    p_fwe = (1 + (nul.max(1)[:, None] >= obs[None]).sum(0)) / (1 + n_permutations)
    return PermutationResult(obs, p_n, p_fwe, nul, n_permutations)
