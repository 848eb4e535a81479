"""Analyses of the voxel dictionary (SAE-BrainMap, METHODS.md section 2).

- ROI-consistent selectivity: the top units of each layer by mean similarity inside an ROI; each
  unit's top images; a unit is selective for a category when more than ``threshold`` of its top
  ``n_images`` images carry that label; consistent when that category is the ROI's (FFA faces, EBA
  bodies, RSC places, VWFA words, food).
- Hierarchy: each voxel's best layer, by the max or the mean similarity over a layer's units.
- ROI structure: voxel x voxel correlation matrices (across images) of the brain data and of the
  voxels' dictionary units, compared by Spearman correlation of their upper triangles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.sae.match import MatchResult, VoxelDictionary, _voxel_inputs

__all__ = ["ROI_CATEGORIES", "BEST_LAYER", "best_layer", "rank_roi_units", "top_images",
           "category_selectivity", "roi_consistency", "roi_rsa"]

#: The seed's expected category of each category-selective ROI; an ROI label matches a key when it
#: starts with it (``FFA-1`` -> FFA).
ROI_CATEGORIES: dict[str, str] = {"FFA": "faces", "OFA": "faces", "EBA": "bodies", "FBA": "bodies",
                                  "RSC": "places", "PPA": "places", "OPA": "places",
                                  "VWFA": "words", "OWFA": "words", "food": "food"}

#: Best layer per voxel: name -> fn(match) -> (n,) layer index.
BEST_LAYER: dict[str, Callable[[MatchResult], np.ndarray]] = {
    "max": lambda m: np.argmax(m.max_r_ln, axis=0),
    "mean": lambda m: np.argmax(m.mean_r_ln, axis=0),
}


def best_layer(match: MatchResult, by: str = "max") -> np.ndarray:
    """(n,) index into ``match.layers`` of each voxel's best layer (the hierarchy map)."""
    if by not in BEST_LAYER:
        raise UnknownNameError("best-layer rule", by, list(BEST_LAYER))
    return BEST_LAYER[by](match)


def rank_roi_units(match: MatchResult, top: int = 100) -> pd.DataFrame:
    """Units ranked by mean similarity inside each ROI, the ``top`` per (ROI, layer).

    Returns a frame with columns ``roi, layer, rank, unit, mean_r`` (rank 0 = best).
    """
    if not match.roi_names:
        raise InputError("match", "a MatchResult computed with ROI labels", "no ROI labels",
                         "pass roi=... (or responses with a 'roi' coordinate) to match_units_to_voxels")
    rows = []
    for li, layer in enumerate(match.layers):
        mean_kr = match.roi_mean_r[li]
        for ri, roi in enumerate(match.roi_names):
            order = np.argsort(-mean_kr[:, ri], kind="stable")[:top]
            rows += [(roi, layer, rank, int(u), float(mean_kr[u, ri]))
                     for rank, u in enumerate(order)]
    return pd.DataFrame(rows, columns=["roi", "layer", "rank", "unit", "mean_r"])


def top_images(acts_sk: np.ndarray, units: Sequence[int], n: int = 20) -> np.ndarray:
    """(u, n) indices of the images that activate each unit most, best first."""
    acts_sk = np.asarray(acts_sk)
    if n > acts_sk.shape[0]:
        raise InputError("n", f"at most {acts_sk.shape[0]} images", str(n), "lower n")
    cols = acts_sk[:, np.asarray(units, dtype=np.int64)]
    return np.argsort(-cols, axis=0, kind="stable")[:n].T


def category_selectivity(top_un: np.ndarray, labels_s: Sequence[str], threshold: int = 10
                         ) -> np.ndarray:
    """(u,) the category of more than ``threshold`` of each unit's top images, or "" if none."""
    labels_s = np.asarray(labels_s).astype(str)
    out = []
    for row in np.asarray(top_un):
        cats, counts = np.unique(labels_s[row], return_counts=True)
        best = int(np.argmax(counts))
        out.append(cats[best] if counts[best] > threshold and cats[best] != "" else "")
    return np.asarray(out, dtype=object).astype(str)


def _expected(roi: str, categories: Mapping[str, str]) -> str:
    hits = [k for k in categories if roi == k or roi.startswith(k + "-") or roi.startswith(k)]
    return categories[max(hits, key=len)] if hits else ""


def roi_consistency(match: MatchResult, units: Mapping[str, np.ndarray], labels_s: Sequence[str],
                    roi_categories: Mapping[str, str] | None = None, top_units: int = 100,
                    n_images: int = 20, threshold: int = 10) -> pd.DataFrame:
    """Selectivity and ROI consistency of each ROI's top units (the seed's analysis).

    Parameters
    ----------
    match : from ``match_units_to_voxels`` with ROI labels.
    units : layer -> (s, k) per-image unit activations (the ones matched).
    labels_s : a category label per image ("" for none).
    roi_categories : ROI -> expected category (default ``ROI_CATEGORIES``).

    Returns
    -------
    ``rank_roi_units`` plus columns ``category`` (the unit's selective category or ""),
    ``expected`` (the ROI's category or "") and ``consistent`` (category == expected != "").
    """
    cats = ROI_CATEGORIES if roi_categories is None else dict(roi_categories)
    s = next(iter(units.values())).shape[0]
    if len(labels_s) != s:
        raise InputError("labels_s", f"{s} labels (one per image)", f"{len(labels_s)}",
                         "give one category label per image, in image order")
    table = rank_roi_units(match, top_units)
    table["category"] = ""
    for layer, idx in table.groupby("layer").groups.items():
        top = top_images(units[layer], table.loc[idx, "unit"].to_numpy(), n_images)
        table.loc[idx, "category"] = category_selectivity(top, labels_s, threshold)
    table["expected"] = [_expected(r, cats) for r in table["roi"]]
    table["consistent"] = (table["category"] == table["expected"]) & (table["expected"] != "")
    return table


def roi_rsa(voxels, dictionary: VoxelDictionary, units: Mapping[str, np.ndarray],
            roi: Sequence[str] | None = None) -> dict[str, float]:
    """Spearman rho between the voxel x voxel correlation matrices of brain and dictionary, per ROI.

    For each ROI with at least 3 voxels: C_brain[v, w] = Pearson r across images of voxels v and w;
    C_dict[v, w] = the same for the activations of their dictionary units; rho = Spearman of the
    two upper triangles (diagonal excluded). Voxels without a unit (one-to-one leftovers) are
    skipped; pairs sharing a unit have C_dict = 1.
    """
    from scipy.stats import spearmanr

    vox_sn, _, roi_coord = _voxel_inputs(voxels)
    roi = roi_coord if roi is None else np.asarray(roi).astype(str)
    if roi is None or len(roi) != vox_sn.shape[1]:
        raise InputError("roi", f"{vox_sn.shape[1]} ROI labels", "none or another count",
                         "pass responses with a 'roi' coordinate or roi=[...]")
    out: dict[str, float] = {}
    for name in sorted(set(roi) - {""}):
        idx = np.flatnonzero((roi == name) & (dictionary.layer_n >= 0))
        if len(idx) < 3:
            continue
        dict_sv = np.stack([np.asarray(units[dictionary.layers[dictionary.layer_n[v]]])
                            [:, dictionary.unit_n[v]] for v in idx], 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            c_brain, c_dict = np.corrcoef(vox_sn[:, idx].T), np.corrcoef(dict_sv.T)
        iu = np.triu_indices(len(idx), 1)
        a, b = c_brain[iu], c_dict[iu]
        ok = np.isfinite(a) & np.isfinite(b)
        out[name] = float(spearmanr(a[ok], b[ok])[0]) if ok.sum() >= 3 else float("nan")
    return out
