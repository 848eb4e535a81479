"""Searchlight spheres over a volume mask, and their RDMs computed many spheres at a time.

Spheres follow rsatoolbox 0.3 (``rsatoolbox.util.searchlight.get_volume_searchlight``; Kriegeskorte,
Goebel & Bandettini 2006, PNAS 103:3863) so centres agree with it exactly: a sphere of radius r
holds the voxels at Euclidean distance *strictly less* than r (in voxel units) from its centre,
clipped at the edge of the grid; a mask voxel is a centre when the fraction of its clipped sphere
inside the mask is at least ``threshold``. The neighbourhood is the sphere's mask voxels only
(rsatoolbox's ``truncate_at_boundary=True``), so below ``threshold=1`` no voxel outside the mask
enters an RDM (rsatoolbox issue #466).

RDMs are computed in batches of spheres: the batch's patterns are gathered into one (b, k, s)
tensor (spheres sorted by size, so most batches need no padding; padded voxels are zeros that
centring leaves at zero), one batched matmul gives the b Gram matrices, and their diagonals
normalise the gathered upper triangles. Nothing per centre runs in Python, and memory is bounded
by the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural.fmri import load_image
from cortexalign.rdm import as_tensor

__all__ = ["Searchlights", "searchlight_centers", "searchlight_rdms", "iter_searchlight_rdms",
           "SEARCHLIGHT_RDM_METHODS", "read_mask"]

# target size of one batch's buffers when ``batch`` is None: on the CPU mid-sized batches stay
# in cache (RDMs of 8,000 spheres of 93 voxels x 92 stimuli on our 2-core box: 0.59 s in batches
# of 32, 0.50 s of 128, 0.58 s of 640); an accelerator wants large ones
_BATCH_BYTES = {"cpu": 48 * 2**20}
_BATCH_BYTES_ACCELERATOR = 256 * 2**20


@dataclass(frozen=True, eq=False)
class Searchlights:
    """Searchlight spheres over a mask.

    Attributes
    ----------
    mask_xyz : (X, Y, Z) bool mask; its voxels, in C order (``np.nonzero``), are the columns of
        the betas (``betas_sn``) the spheres index.
    radius, threshold : as passed to ``searchlight_centers``.
    centers_c3 : (c, 3) voxel coordinates of the c centres, in C order.
    center_voxel_c : (c,) index of each centre among the mask voxels.
    neighbors_ck : (c, k) indices of the mask voxels of each sphere, ascending, padded with -1
        on the right (k = the largest sphere).
    sizes_c : (c,) number of mask voxels in each sphere.
    affine : (4, 4) voxel-to-world affine of the mask (None for a bare array).
    """

    mask_xyz: np.ndarray
    radius: float
    threshold: float
    centers_c3: np.ndarray
    center_voxel_c: np.ndarray
    neighbors_ck: np.ndarray
    sizes_c: np.ndarray
    affine: np.ndarray | None = None

    @property
    def n_centers(self) -> int:
        """Number of searchlight centres."""
        return len(self.sizes_c)

    @property
    def n_voxels(self) -> int:
        """Voxels in the mask (columns of the betas)."""
        return int(self.mask_xyz.sum())

    def neighbors(self, i: int) -> np.ndarray:
        """The mask-voxel indices of sphere ``i`` (ascending)."""
        return self.neighbors_ck[i, : self.sizes_c[i]]

    def flat_centers(self) -> np.ndarray:
        """(c,) centres as flat (C-order) indices into the volume: rsatoolbox's ``centers``."""
        return np.ravel_multi_index(tuple(self.centers_c3.T), self.mask_xyz.shape)


def read_mask(mask) -> tuple[np.ndarray, np.ndarray | None]:
    """A mask given as an array, a nibabel image or a NIfTI path -> (bool (X, Y, Z), affine)."""
    affine = None
    if isinstance(mask, (str, Path)):
        mask = load_image(mask, "mask")
    if hasattr(mask, "dataobj") and hasattr(mask, "affine"):
        affine = np.asarray(mask.affine, dtype=np.float64)
        mask = np.asarray(mask.dataobj)
    arr = np.asarray(mask)
    if arr.ndim != 3:
        raise InputError("mask", "a 3-D (x, y, z) mask", f"shape {arr.shape}",
                         "pass one volume (e.g. a brain or ROI mask), not a 4-D series")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError("mask", "a boolean or numeric mask", f"dtype {arr.dtype}", "cast to bool")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError("mask", "finite values", "NaN/Inf in the mask", "use mask > 0")
    out = arr > 0 if arr.dtype != bool else arr.copy()
    if not out.any():
        raise InputError("mask", "at least one voxel inside the mask", "an empty mask",
                         "check the mask (values > 0 are inside)")
    return out, affine


def _sphere_offsets(radius: float) -> np.ndarray:
    """(o, 3) integer offsets at distance < radius, in lexicographic (C) order, as rsatoolbox
    tests them (``cdist`` distance ``< radius``)."""
    r = int(np.ceil(radius))
    g = np.arange(-r, r + 1)
    off = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    return off[np.sqrt((off.astype(np.float64) ** 2).sum(1)) < radius]


def searchlight_centers(mask_xyz, radius: float, min_voxels: int | None = None,
                        threshold: float = 1.0, chunk: int = 4096) -> Searchlights:
    """Searchlight centres and their spheres' mask voxels (rsatoolbox's rule, module docstring).

    Parameters
    ----------
    mask_xyz : (X, Y, Z) mask (bool or > 0), a nibabel image or a NIfTI path (its affine is kept).
    radius : sphere radius in voxels; voxels at distance < radius belong to the sphere (radius 2:
        the 27 voxels of the 3x3x3 cube; radius 3: 93 voxels).
    min_voxels : also drop centres whose sphere has fewer mask voxels (None: no such limit).
    threshold : keep a centre when at least this fraction of its sphere (clipped at the grid edge)
        lies in the mask; 1.0: whole spheres only.
    chunk : mask voxels examined at once (bounds memory at ``chunk x sphere`` entries).

    Returns
    -------
    Searchlights, centres in C order, equal to ``get_volume_searchlight(mask, radius, threshold)``'s
    centres, with neighbourhoods restricted to the mask.
    """
    mask, affine = read_mask(mask_xyz)
    if not (isinstance(radius, (int, float, np.number)) and np.isfinite(radius) and radius > 0):
        raise InputError("radius", "a positive, finite radius in voxels", repr(radius),
                         "e.g. radius=3 (a sphere of 93 voxels)")
    if not (isinstance(threshold, (int, float, np.number)) and 0.0 <= threshold <= 1.0):
        raise InputError("threshold", "a fraction in [0, 1]", repr(threshold),
                         "e.g. threshold=1.0 (whole spheres) or 0.5")
    if min_voxels is not None and (not isinstance(min_voxels, (int, np.integer)) or min_voxels < 1):
        raise InputError("min_voxels", "a positive integer or None", repr(min_voxels),
                         "e.g. min_voxels=10")
    shape = np.array(mask.shape)
    index_xyz = np.full(mask.shape, -1, dtype=np.int64)
    vox_v3 = np.argwhere(mask)
    index_xyz[tuple(vox_v3.T)] = np.arange(len(vox_v3))
    off_o3 = _sphere_offsets(float(radius))
    keep, rows = [], []
    for c0 in range(0, len(vox_v3), max(1, int(chunk))):
        pts = vox_v3[c0:c0 + chunk, None, :] + off_o3[None]  # (m, o, 3)
        in_grid = ((pts >= 0) & (pts < shape)).all(-1)
        idx = index_xyz[tuple(np.clip(pts, 0, shape - 1).transpose(2, 0, 1))]
        idx = np.where(in_grid, idx, -1)
        in_mask = idx >= 0
        # rsatoolbox: mask[neighbours].mean() >= threshold, neighbours clipped at the grid edge
        frac = in_mask.sum(1) / in_grid.sum(1)
        ok = frac >= threshold
        keep.append(np.nonzero(ok)[0] + c0)
        # offsets are in C order, so the mask indices are ascending: the sort only moves the
        # padding (int64 max, -1 below) to the right
        rows.append(np.sort(np.where(in_mask[ok], idx[ok], np.iinfo(np.int64).max), axis=1))
    centers = np.concatenate(keep)
    nb = np.concatenate(rows) if rows else np.empty((0, len(off_o3)), np.int64)
    sizes = (nb != np.iinfo(np.int64).max).sum(1)
    if min_voxels is not None:
        big = sizes >= min_voxels
        nb, centers, sizes = nb[big], centers[big], sizes[big]
    if len(centers) == 0:
        raise InputError("threshold", "settings that leave at least one searchlight centre",
                         f"no centre with radius={radius}, threshold={threshold}, "
                         f"min_voxels={min_voxels} in a mask of {len(vox_v3)} voxels",
                         "lower threshold or min_voxels, or use a smaller radius")
    nb = nb[:, : int(sizes.max())]
    nb[nb == np.iinfo(np.int64).max] = -1
    return Searchlights(mask, float(radius), float(threshold), vox_v3[centers], centers, nb,
                        sizes, affine)


# --- RDMs of many spheres at once ---------------------------------------------------------------

def _gram(x_bks: torch.Tensor, ij_p: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The upper triangles (b, p) of the stimulus Gram matrices ``x^T x`` and their (b, s)
    diagonals: one batched matmul, then a gather of the p pairs."""
    g_bss = x_bks.transpose(1, 2) @ x_bks
    return (g_bss.reshape(g_bss.shape[0], -1).index_select(1, ij_p[2]),
            torch.diagonal(g_bss, dim1=1, dim2=2))


def _one_minus_cosine(g_bp, sq_bs, raw_bs, ij_p):
    """``1 - g_ij / sqrt(sq_i sq_j)`` and ok_b: no stimulus with a zero norm (to 1e-12 of its
    raw norm) in the sphere. Dividing the Gram, not the patterns, saves a pass over them."""
    ok_b = (sq_bs > 1e-24 * raw_bs).all(1)
    inv_bs = sq_bs.clamp_min(1e-300).rsqrt()
    return 1.0 - g_bp * inv_bs[:, ij_p[0]] * inv_bs[:, ij_p[1]], ok_b


def _sl_correlation(x_bks, valid_bk1, size_b1, ij_p):
    """1 - Pearson r of the stimuli's patterns over each sphere's voxels."""
    mean_b1s = x_bks.sum(1, keepdim=True) / size_b1[:, :, None]
    xc = x_bks - mean_b1s
    if valid_bk1 is not None:  # padded voxels stay 0 after centring
        xc = xc * valid_bk1
    g_bp, sq_bs = _gram(xc, ij_p)
    # |x|^2 = |x - m|^2 + k m^2: the raw norm without another pass over x
    return _one_minus_cosine(g_bp, sq_bs, sq_bs + size_b1 * mean_b1s[:, 0] ** 2, ij_p)


def _sl_cosine(x_bks, valid_bk1, size_b1, ij_p):
    """1 - cosine of the stimuli's patterns (no centring)."""
    g_bp, sq_bs = _gram(x_bks, ij_p)
    return _one_minus_cosine(g_bp, sq_bs, sq_bs, ij_p)


def _sl_euclidean(x_bks, valid_bk1, size_b1, ij_p):
    """Squared euclidean distance / number of voxels (rsatoolbox's convention, as ``_rdm``)."""
    g_bp, sq_bs = _gram(x_bks, ij_p)
    d_bp = (sq_bs[:, ij_p[0]] + sq_bs[:, ij_p[1]] - 2.0 * g_bp).clamp_(min=0.0) / size_b1
    return d_bp, torch.ones(x_bks.shape[0], dtype=torch.bool, device=x_bks.device)


SEARCHLIGHT_RDM_METHODS: dict[str, Callable] = {
    "correlation": _sl_correlation,
    "euclidean": _sl_euclidean,
    "cosine": _sl_cosine,
}
"""Name -> ``fn(x_bks, valid_bk1, size_b1, ij_p) -> (rdm_bp, ok_b)``: the RDM upper triangles of
b spheres from their zero-padded (b, k, s) patterns (``valid_bk1``: the (b, k, 1) mask of real
voxels, None without padding; ``size_b1``: voxels per sphere; ``ij_p``: rows, columns and flat
indices of the p pairs). ``ok_b`` is False where a stimulus's pattern has zero norm (the RDM is
undefined)."""


def check_rdm_method(method: str) -> Callable:
    if method not in SEARCHLIGHT_RDM_METHODS:
        raise UnknownNameError("searchlight RDM method", str(method), SEARCHLIGHT_RDM_METHODS)
    return SEARCHLIGHT_RDM_METHODS[method]


def betas_tensor(betas, sl: Searchlights, device: torch.device) -> torch.Tensor:
    """Betas as a finite float64 (n, s) voxel-major tensor over the mask voxels, checked.

    ``betas`` is an (s, n) array or tensor (stimuli in rows, mask voxels in C order), or a 4-D
    (X, Y, Z, s) array, nibabel image or NIfTI path on the mask's grid.
    """
    if isinstance(betas, (str, Path)):
        betas = load_image(betas, "betas")
    if hasattr(betas, "dataobj") and hasattr(betas, "affine"):
        if sl.affine is not None and not np.allclose(betas.affine, sl.affine, atol=1e-3):
            raise InputError("betas", "an image with the mask's affine", "a different affine",
                             "use a mask in the betas' space, or resample it")
        betas = np.asarray(betas.dataobj)
    nd = betas.ndim if hasattr(betas, "ndim") else np.ndim(betas)
    if nd == 4:
        shape = tuple(betas.shape[:3])
        if shape != sl.mask_xyz.shape:
            raise InputError("betas", f"a 4-D volume on the mask's grid {sl.mask_xyz.shape} "
                             "+ (stimulus,)", f"shape {tuple(betas.shape)}",
                             "resample the mask to the betas' grid (nearest neighbour)")
        betas = np.asarray(betas)[sl.mask_xyz]  # (n, s): only mask voxels need be finite
        return as_tensor(betas, "betas", device, ndim=(2,))
    t = as_tensor(betas, "betas", device, ndim=(2,))
    if t.shape[1] != sl.n_voxels:
        raise InputError("betas", f"(s, {sl.n_voxels}) betas: one column per mask voxel, in C "
                         "order", f"shape {tuple(t.shape)}", "pass volume[mask].T, or the 4-D "
                         "volume itself")
    return t.T.contiguous()


def _auto_batch(s: int, k: int, device: torch.device, dtype_bytes: int = 8) -> int:
    per = dtype_bytes * (3 * k * s + 3 * s * s)  # gathered, centred, Gram, RDM
    return max(1, _BATCH_BYTES.get(device.type, _BATCH_BYTES_ACCELERATOR) // per)


def iter_searchlight_rdms(betas_ns: torch.Tensor, sl: Searchlights, method: str = "correlation",
                          batch: int | None = None
                          ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Yield ``(centres_b, rdm_bp, ok_b)`` batch by batch over validated (n, s) betas: the
    centre indices, their RDM upper triangles (row-major) and whether each is defined (an
    undefined one is NaN). Spheres are visited by size so a batch's padding is small."""
    fn = check_rdm_method(method)
    s, dev = betas_ns.shape[1], betas_ns.device
    if s < 3:
        raise InputError("betas", "at least 3 stimuli (rows)", f"{s}", "use more stimuli")
    if method == "correlation" and int(sl.sizes_c.min()) < 2:
        raise InputError("radius", "spheres of at least 2 mask voxels for correlation RDMs",
                         f"{int((sl.sizes_c < 2).sum())} spheres of one voxel (radius "
                         f"{sl.radius})", "use a larger radius, or min_voxels=2 or more")
    iu = torch.triu_indices(s, s, 1, device=dev)
    ij_p = (iu[0], iu[1], iu[0] * s + iu[1])
    order = np.argsort(sl.sizes_c, kind="stable")
    b = max(1, int(batch)) if batch else _auto_batch(s, int(sl.sizes_c.max()), dev)
    for i0 in range(0, len(order), b):
        idx = order[i0:i0 + b]
        sizes = sl.sizes_c[idx]
        k = int(sizes.max())
        nb_bk = torch.as_tensor(sl.neighbors_ck[idx, :k], device=dev)
        if int(sizes.min()) == k:  # no padding in this batch (the usual case: sorted by size)
            x_bks, valid_bk1 = betas_ns[nb_bk], None
        else:
            valid_bk1 = (nb_bk >= 0).to(betas_ns.dtype)[:, :, None]
            x_bks = betas_ns[nb_bk.clamp_min(0)] * valid_bk1
        size_b1 = torch.as_tensor(sizes, dtype=betas_ns.dtype, device=dev)[:, None]
        rdm_bp, ok_b = fn(x_bks, valid_bk1, size_b1, ij_p)
        rdm_bp[~ok_b] = float("nan")
        yield idx, rdm_bp, ok_b


def searchlight_rdms(betas, searchlights: Searchlights, rdm_method: str = "correlation",
                     device: str | torch.device | None = None, batch: int | None = None
                     ) -> np.ndarray:
    """The neural RDM of every searchlight sphere.

    Parameters
    ----------
    betas : (s, n) responses of the n mask voxels (C order) to s stimuli, or a 4-D (X, Y, Z, s)
        array / nibabel image / NIfTI path on the mask's grid (only mask voxels must be finite).
    searchlights : from ``searchlight_centers``.
    rdm_method : a key of ``SEARCHLIGHT_RDM_METHODS`` (``correlation``, ``euclidean``, ``cosine``;
        the conventions of ``compute_rdm`` and rsatoolbox).
    device : where to compute (``None``: CUDA when available).
    batch : spheres per batched matmul (None: about 48 MB of buffers per batch on the CPU, 256 MB
        on an accelerator).

    Returns
    -------
    rdms_cp : (c, s (s - 1) / 2) float64 upper triangles (row-major), one row per centre in the
        order of ``searchlights``; a row is NaN where a stimulus's pattern over the sphere has zero
        norm (correlation / cosine undefined). Holds c x p values: for whole brains prefer
        ``searchlight_rsa``, which streams.
    """
    check_rdm_method(rdm_method)
    dev = resolve_device(device)
    betas_ns = betas_tensor(betas, searchlights, dev)
    s = betas_ns.shape[1]
    out = np.empty((searchlights.n_centers, s * (s - 1) // 2))
    for idx, rdm_bp, _ in iter_searchlight_rdms(betas_ns, searchlights, rdm_method, batch):
        out[idx] = rdm_bp.cpu().numpy()
    return out
