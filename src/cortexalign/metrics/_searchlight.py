"""Searchlight RSA on fMRI volumes: a model RDM compared with the RDM of every sphere of voxels.

Kriegeskorte, Goebel & Bandettini (2006), "Information-based functional brain mapping", PNAS
103:3863-3868; RSA: Kriegeskorte, Mur & Bandettini (2008). The spheres and per-sphere RDMs match
rsatoolbox 0.3's ``get_volume_searchlight`` / ``get_searchlight_RDMs`` (``_searchlight``), the map
its ``evaluate_models_searchlight`` with ``eval_fixed``; here the RDMs are computed and compared
in batches of spheres on any device, streaming, so whole-brain maps need memory for one batch.

The permutation null relabels the stimuli of the model RDM (rows and columns together; Nili et
al. 2014), the same n_perm relabelings for every centre, compared with a batch of spheres in one
call; p-values are Phipson & Smyth's ``(1 + #{null at least as extreme}) / (1 + n_perm)`` as in
``cortexalign.stats``, then adjusted across centres (Benjamini-Hochberg by default).
"""

from __future__ import annotations

import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics._rsa_metric import _model_rdm_tensor
from cortexalign.metrics._searchlight_rdms import (
    SEARCHLIGHT_RDM_METHODS,
    Searchlights,
    betas_tensor,
    check_rdm_method,
    iter_searchlight_rdms,
    searchlight_centers,
    searchlight_rdms,
)
from cortexalign.neural.fmri import load_image
from cortexalign.rdm import (
    RDM_COMPARISONS,
    RDM_METHODS,
    average_ranks,
    check_n_stimuli,
    check_varies,
    compare_vectors,
    compute_rdm,
)
from cortexalign.stats import ALTERNATIVES, CORRECTIONS, adjust_p_values

__all__ = ["Searchlights", "SearchlightResult", "searchlight_centers", "searchlight_rdms",
           "searchlight_rsa", "SEARCHLIGHT_RDM_METHODS", "SEARCHLIGHT_MAPS"]

SEARCHLIGHT_MAPS = {"values": "values_c", "p_values": "p_values_c", "q_values": "q_values_c"}
"""Map name -> the ``SearchlightResult`` field it is drawn from."""

# comparisons that are another comparison of average ranks: the model side is ranked once
_OF_RANKS = {"spearman": "pearson"}


@dataclass(frozen=True, eq=False)
class SearchlightResult:
    """A searchlight map: one comparison value (and p-value) per sphere centre.

    Attributes
    ----------
    searchlights : the spheres (centres, neighbourhoods, mask, affine).
    values_c : (c,) model-vs-sphere comparison per centre; NaN where the sphere's RDM is
        undefined (a stimulus with a constant pattern over it) or constant.
    p_values_c, q_values_c : (c,) permutation p-values and their ``correction``-adjusted values
        across centres (None without permutations).
    compare, rdm_method, n_perm, correction : how the map was made.
    affine : (4, 4) voxel-to-world affine of the maps (None: unknown; pass one to ``to_nifti``).
    """

    searchlights: Searchlights
    values_c: np.ndarray
    p_values_c: np.ndarray | None
    q_values_c: np.ndarray | None
    compare: str
    rdm_method: str
    n_perm: int
    correction: str
    affine: np.ndarray | None

    def map_xyz(self, what: str = "values") -> np.ndarray:
        """(X, Y, Z) float64 volume of ``what`` (a key of ``SEARCHLIGHT_MAPS``), NaN off-centre."""
        if what not in SEARCHLIGHT_MAPS:
            raise UnknownNameError("searchlight map", str(what), SEARCHLIGHT_MAPS)
        vals = getattr(self, SEARCHLIGHT_MAPS[what])
        if vals is None:
            raise InputError("what", "a map this result holds", repr(what),
                             "run searchlight_rsa with n_perm > 0 for p-value maps")
        out = np.full(self.searchlights.mask_xyz.shape, np.nan)
        out[tuple(self.searchlights.centers_c3.T)] = vals
        return out

    def to_nifti(self, what: str = "values", affine=None):
        """The map as a ``nibabel.Nifti1Image`` in the mask's space (its affine, or ``affine``)."""
        import nibabel

        aff = self.affine if affine is None else np.asarray(affine, dtype=np.float64)
        if aff is None or np.shape(aff) != (4, 4):
            raise InputError("affine", "a (4, 4) voxel-to-world affine",
                             "none (the mask was a bare array)" if aff is None
                             else f"shape {np.shape(aff)}", "pass affine=..., or give the mask "
                             "as a NIfTI image or path")
        return nibabel.Nifti1Image(self.map_xyz(what), aff)

    def save(self, path: str | Path, what: str = "values", affine=None) -> Path:
        """Write ``to_nifti(what, affine)`` to ``path`` (.nii or .nii.gz) atomically: a temporary
        file beside it, then ``os.replace``; nothing is left behind on failure."""
        import nibabel

        path = Path(path)
        suffix = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
        if suffix not in (".nii", ".nii.gz"):
            raise InputError("path", "a .nii or .nii.gz file name", repr(str(path)),
                             "end the file name in .nii.gz")
        img = self.to_nifti(what, affine)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name[: -len(suffix)]}.{secrets.token_hex(6)}.tmp{suffix}"
        try:
            nibabel.save(img, str(tmp))
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path


def _check_names(rdm_method: str, model_rdm_method: str, compare: str, correction: str,
                 alternative: str, n_perm) -> None:
    check_rdm_method(rdm_method)
    if model_rdm_method not in RDM_METHODS or model_rdm_method == "crossnobis":
        raise UnknownNameError("model RDM method", str(model_rdm_method),
                               [m for m in RDM_METHODS if m != "crossnobis"])
    if compare not in RDM_COMPARISONS:
        raise UnknownNameError("RDM comparison", str(compare), RDM_COMPARISONS)
    if correction not in CORRECTIONS:
        raise UnknownNameError("correction", str(correction), CORRECTIONS)
    if alternative not in ALTERNATIVES:
        raise UnknownNameError("alternative", str(alternative), ALTERNATIVES)
    if not isinstance(n_perm, (int, np.integer)) or isinstance(n_perm, bool) or n_perm < 0:
        raise InputError("n_perm", "a number of permutations >= 0", repr(n_perm),
                         "e.g. n_perm=1000 (0: no p-values)")


def _model_vector(model_rdm_ss, features_sd, model_rdm_method: str, dev: torch.device
                  ) -> tuple[torch.Tensor, str]:
    """The model's (s, s) RDM tensor and the parameter it came from."""
    if (model_rdm_ss is None) == (features_sd is None):
        raise InputError("model_rdm_ss", "exactly one of model_rdm_ss and features_sd",
                         "both" if model_rdm_ss is not None else "neither",
                         "pass the model RDM (s, s) or the model features (s, d), not both")
    if model_rdm_ss is not None:
        return _model_rdm_tensor(model_rdm_ss, dev), "model_rdm_ss"
    return compute_rdm(features_sd, model_rdm_method, device=dev, return_tensor=True), "features_sd"


def _models(rdm_ss: torch.Tensor, n_perm: int, seed: int) -> torch.Tensor:
    """(1 + n_perm, p): the model's upper triangle, then its stimulus relabelings (the draws of
    ``stats.rdm_permutation_test``)."""
    s, dev = rdm_ss.shape[0], rdm_ss.device
    iu = torch.triu_indices(s, s, 1, device=dev)
    if n_perm == 0:
        return rdm_ss[iu[0], iu[1]][None]
    perms = np.argsort(np.random.default_rng(seed).random((n_perm, s)), axis=1)
    perm_ps = torch.as_tensor(perms, device=dev)
    return torch.cat([rdm_ss[iu[0], iu[1]][None], rdm_ss[perm_ps[:, iu[0]], perm_ps[:, iu[1]]]])


def _extreme_counts(sim_mb: np.ndarray, alternative: str) -> np.ndarray:
    """#{null at least as extreme as observed} per centre, with ``exact_p_value``'s tolerance."""
    obs_b, null_nb = sim_mb[0], sim_mb[1:]
    tol_b = 1e-12 * np.maximum(1.0, np.abs(obs_b))
    obs_b = {"less": obs_b + tol_b, "two-sided": np.abs(obs_b) - tol_b}.get(alternative,
                                                                             obs_b - tol_b)
    return ALTERNATIVES[alternative](obs_b[None], null_nb).sum(0)


def searchlight_rsa(betas, mask, radius: float | None = None, *, model_rdm_ss=None,
                    features_sd=None, threshold: float = 1.0, min_voxels: int | None = None,
                    rdm_method: str = "correlation", model_rdm_method: str = "correlation",
                    compare: str = "spearman", n_perm: int = 0, seed: int = 0,
                    alternative: str = "greater", correction: str = "fdr_bh",
                    device: str | torch.device | None = None, batch: int | None = None,
                    affine=None) -> SearchlightResult:
    """Compare a model RDM with the neural RDM of every searchlight sphere.

    Parameters
    ----------
    betas : (s, n) responses of the n mask voxels (C order), or a 4-D (X, Y, Z, s) array,
        nibabel image or NIfTI path on the mask's grid; only mask voxels must be finite.
    mask : (X, Y, Z) mask (array, nibabel image or path; an image's affine is kept), or the
        ``Searchlights`` of ``searchlight_centers`` (then ``radius`` must be None).
    radius, threshold, min_voxels : the spheres (``searchlight_centers``; radius in voxels,
        voxels at distance < radius, rsatoolbox's rule).
    model_rdm_ss : (s, s) model RDM; or ``features_sd``: (s, d) model features, whose RDM is
        taken with ``model_rdm_method``. Stimuli in the betas' order; exactly one of the two.
    rdm_method : the spheres' RDM (``SEARCHLIGHT_RDM_METHODS``).
    compare : a key of ``RDM_COMPARISONS`` (default Spearman).
    n_perm, seed, alternative : stimulus-relabeling permutations of the model RDM, shared by every
        centre (0: no p-values); the side of the test (``greater``, ``less``, ``two-sided``).
    correction : adjustment of the p-values across centres (``stats.CORRECTIONS``).
    device : where to compute (``None``: CUDA when available); batch : spheres per batch
        (None: ~48 MB of buffers on the CPU, ~256 MB on an accelerator). The permutation null
        holds (1 + n_perm, s (s - 1) / 2) values on the device.
    affine : (4, 4) affine of the output maps (default: the mask's, else the betas image's).

    Returns
    -------
    SearchlightResult: ``values_c`` per centre, ``map_xyz()``, ``to_nifti()``, ``save(path)``.
    """
    _check_names(rdm_method, model_rdm_method, compare, correction, alternative, n_perm)
    if affine is not None and (np.shape(affine) != (4, 4) or not np.isfinite(affine).all()):
        raise InputError("affine", "a finite (4, 4) voxel-to-world affine",
                         f"shape {np.shape(affine)}", "pass the mask image's affine, or None")
    dev = resolve_device(device)
    if isinstance(mask, Searchlights):
        if radius is not None:
            raise InputError("radius", "None when mask is already a Searchlights", repr(radius),
                             "pass the mask itself with a radius, or the Searchlights alone")
        sl = mask
    else:
        if radius is None:
            raise InputError("radius", "a sphere radius in voxels", "None", "e.g. radius=3")
        sl = searchlight_centers(mask, radius, min_voxels, threshold)
    if isinstance(betas, (str, Path)):
        betas = load_image(betas, "betas")
    betas_affine = getattr(betas, "affine", None) if hasattr(betas, "dataobj") else None
    betas_ns = betas_tensor(betas, sl, dev)
    rdm_ss, model_name = _model_vector(model_rdm_ss, features_sd, model_rdm_method, dev)
    check_n_stimuli(betas_ns.shape[1], rdm_ss.shape[0], model_name)
    models_mp = _models(rdm_ss, int(n_perm), seed)
    check_varies(models_mp[:1], model_name)
    method = _OF_RANKS.get(compare, compare)
    if method != compare:
        models_mp = average_ranks(models_mp)

    values = np.full(sl.n_centers, np.nan)
    counts = np.zeros(sl.n_centers)
    for idx, rdm_bp, ok_b in iter_searchlight_rdms(betas_ns, sl, rdm_method, batch):
        good = ok_b & (rdm_bp.amax(1) > rdm_bp.amin(1))  # a constant RDM has no correlation
        if not bool(good.any()):
            continue
        neural_gp = rdm_bp[good]
        if method != compare:
            neural_gp = average_ranks(neural_gp)
        sim_mg = compare_vectors(models_mp, neural_gp, method).cpu().numpy()
        at = idx[good.cpu().numpy()]
        values[at] = sim_mg[0]
        if n_perm:
            counts[at] = _extreme_counts(sim_mg, alternative)
    undefined = int(np.isnan(values).sum())
    if undefined:
        warnings.warn(f"{undefined} of {sl.n_centers} searchlights have an undefined RDM (a "
                      "stimulus whose pattern is constant over the sphere, or equal "
                      "dissimilarities); their value is NaN", RuntimeWarning, stacklevel=2)
    p = q = None
    if n_perm:
        p = np.where(np.isnan(values), np.nan, (1.0 + counts) / (1.0 + n_perm))
        q = adjust_p_values(p, correction)
    aff = affine if affine is not None else (sl.affine if sl.affine is not None else betas_affine)
    return SearchlightResult(sl, values, p, q, compare, rdm_method, int(n_perm), correction,
                             None if aff is None else np.asarray(aff, dtype=np.float64))
