"""Searchlight RSA on a synthetic fMRI volume: find the sphere planted to carry a model's RDM.

A ground-truth check on real NIfTI files. An ellipsoidal "brain" mask on a 3 mm grid and one
response volume per bundled image (92) are written with nibabel. Inside a planted sphere (radius
3 voxels, in the ventral posterior part of one hemisphere) each voxel's responses are a random
linear read-out of EfficientNet-Lite0 ``blocks.5`` features; every voxel, planted or not, also
gets spatially smoothed Gaussian noise. ``searchlight_rsa`` (Kriegeskorte et al. 2006) then
compares the correlation-distance RDM of every 3-voxel sphere with the model RDM of the same
features (Spearman), with 1,000 stimulus-relabeling permutations shared by all centres and
Benjamini-Hochberg FDR across centres. The map's peak should sit on the planted centre, and the
centres that survive FDR should mostly be those whose sphere reaches the planted one (BH lets
about 5% of the discoveries be false). With 1,000 permutations no p-value is below 1/1001, so a
centre survives only when enough others do: raise ``--n-perm`` for weaker effects.

Run:  python examples/07_searchlight.py [--out DIR] [--noise 1.0] [--n-perm 1000]
Writes DIR/mask.nii.gz, DIR/betas.nii.gz (X, Y, Z, 92), DIR/searchlight_rho.nii.gz (Spearman
per centre), DIR/searchlight_q.nii.gz (FDR q-values) and DIR/searchlight_slice.png (axial slice
through the peak).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel
import numpy as np
from matplotlib.figure import Figure
from scipy.ndimage import gaussian_filter

import cortexalign as ca
from cortexalign.metrics import searchlight_rsa

GRID = (22, 26, 20)                  # voxels, 3 mm isotropic
PLANTED = np.array([7, 8, 6])        # voxel coordinates of the planted sphere's centre
RADIUS = 3.0                         # planted sphere and searchlight: voxels at distance < 3
LAYER = "blocks.5"


def brain_mask() -> np.ndarray:
    """(X, Y, Z) bool ellipsoid filling the grid, its lowest slices cut flat."""
    x, y, z = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in GRID), indexing="ij")
    inside = (x / 10.0) ** 2 + (y / 12.0) ** 2 + (z / 9.5) ** 2 <= 1.0
    return inside & (z > -7.0)


def synthetic_betas(feats_sd: np.ndarray, mask_xyz: np.ndarray, noise: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z, s) responses and the (X, Y, Z) planted sphere: a random read-out of the z-scored
    features inside the sphere (unit SD), smoothed unit-SD noise times ``noise`` everywhere."""
    s = feats_sd.shape[0]
    dist_xyz = np.linalg.norm(np.indices(GRID) - PLANTED[:, None, None, None], axis=0)
    sphere_xyz = (dist_xyz < RADIUS) & mask_xyz
    z_sd = (feats_sd - feats_sd.mean(0)) / (feats_sd.std(0) + 1e-12)
    signal_sv = z_sd @ rng.standard_normal((z_sd.shape[1], int(sphere_xyz.sum())))
    noise_xyzs = gaussian_filter(rng.standard_normal((*GRID, s)), sigma=(1.0, 1.0, 1.0, 0.0))
    betas_xyzs = noise * noise_xyzs / noise_xyzs[mask_xyz].std()
    betas_xyzs[sphere_xyz] += (signal_sv / signal_sv.std()).T
    betas_xyzs[~mask_xyz] = 0.0
    return betas_xyzs.astype(np.float32), sphere_xyz


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem)
    parser.add_argument("--noise", type=float, default=1.0, help="noise SD / signal SD")
    parser.add_argument("--n-perm", type=int, default=1000)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    stimuli = ca.load_stimuli("kriegeskorte92")
    model = ca.load_model("efficientnet_lite0", device="cpu")
    feats_sd = ca.extract_features(model, stimuli, [LAYER], progress=False)[LAYER].values
    feats_sd = feats_sd.astype(np.float64)

    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = -3.0 * (np.array(GRID) - 1) / 2  # world origin at the grid's centre, in mm
    mask_xyz = brain_mask()
    betas_xyzs, sphere_xyz = synthetic_betas(feats_sd, mask_xyz, args.noise,
                                             np.random.default_rng(0))
    nibabel.save(nibabel.Nifti1Image(mask_xyz.astype(np.uint8), affine), args.out / "mask.nii.gz")
    nibabel.save(nibabel.Nifti1Image(betas_xyzs, affine), args.out / "betas.nii.gz")
    print(f"mask: {int(mask_xyz.sum())} voxels on a {GRID} grid; planted sphere: "
          f"{int(sphere_xyz.sum())} voxels around voxel {tuple(PLANTED.tolist())}; "
          f"{len(stimuli)} stimuli")

    res = searchlight_rsa(args.out / "betas.nii.gz", args.out / "mask.nii.gz", RADIUS,
                          features_sd=feats_sd, threshold=0.5, n_perm=args.n_perm, seed=0,
                          device="cpu")
    res.save(args.out / "searchlight_rho.nii.gz")
    res.save(args.out / "searchlight_q.nii.gz", "q_values")

    sl = res.searchlights
    peak = int(np.nanargmax(res.values_c))
    peak_xyz = sl.centers_c3[peak]
    print(f"{sl.n_centers} searchlight centres (radius {RADIUS:g} voxels, "
          f"{int(np.median(sl.sizes_c))} voxels per sphere on median)")
    inside = bool(sphere_xyz[tuple(peak_xyz)])
    print(f"peak rho {res.values_c[peak]:.3f} at voxel {tuple(peak_xyz.tolist())}, "
          f"{np.linalg.norm(peak_xyz - PLANTED):.1f} voxels from the planted centre "
          f"{tuple(PLANTED.tolist())}; peak inside the planted sphere: {inside}")
    planted_voxels = np.flatnonzero(sphere_xyz[mask_xyz])  # mask-voxel indices, C order
    reaches_c = np.isin(sl.neighbors_ck, planted_voxels).any(axis=1)
    sig_c = res.q_values_c < 0.05
    at_centre = int(np.flatnonzero((sl.centers_c3 == PLANTED).all(axis=1))[0])
    print(f"FDR q < 0.05: {int(sig_c.sum())} of {sl.n_centers} centres; "
          f"{int((sig_c & reaches_c).sum())} of the {int(reaches_c.sum())} whose sphere reaches "
          f"the planted one, {int((sig_c & ~reaches_c).sum())} elsewhere (smallest p "
          f"{np.nanmin(res.p_values_c):.4f}; the floor 1 / (1 + n_perm) is "
          f"{1 / (1 + args.n_perm):.4f})")
    print(f"planted centre survives FDR: {bool(sig_c[at_centre])} (rho "
          f"{res.values_c[at_centre]:.3f}, q {res.q_values_c[at_centre]:.4f}); median rho of the "
          f"centres that do not reach it: {np.nanmedian(res.values_c[~reaches_c]):.3f}")

    z = int(peak_xyz[2])
    fig = Figure(figsize=(4.6, 4.2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(res.map_xyz("values")[:, :, z].T, origin="lower", cmap="magma")
    ax.contour(mask_xyz[:, :, z].T, levels=[0.5], colors="0.6", linewidths=0.8)
    ax.contour(sphere_xyz[:, :, z].T, levels=[0.5], colors="cyan", linewidths=1.2)
    q_xyz = res.map_xyz("q_values")[:, :, z].T
    ax.contour(np.nan_to_num(q_xyz, nan=1.0) < 0.05, levels=[0.5], colors="lime",
               linewidths=1.0, linestyles="--")
    ax.plot(*peak_xyz[:2], "w+", markersize=10)
    ax.set_title(f"searchlight Spearman rho, axial slice z={z}\ncyan: planted sphere, "
                 "green dashed: FDR q < 0.05, +: peak", fontsize=8)
    ax.set_xlabel("x (voxel)")
    ax.set_ylabel("y (voxel)")
    fig.colorbar(image, ax=ax, label="Spearman rho with the model RDM", shrink=0.8)
    fig.savefig(args.out / "searchlight_slice.png", dpi=120)
    print(f"wrote mask.nii.gz, betas.nii.gz, searchlight_rho.nii.gz, searchlight_q.nii.gz and "
          f"searchlight_slice.png to {args.out}")


if __name__ == "__main__":
    main()
