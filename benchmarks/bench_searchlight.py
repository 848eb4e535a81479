"""Searchlight RSA: cortexalign vs rsatoolbox's searchlight pipeline on the same synthetic volume.

    python benchmarks/bench_searchlight.py                 # 20x20x20 mask, radius 3, 92 stimuli
    python benchmarks/bench_searchlight.py --quick         # 12x12x12 mask, seconds
    python benchmarks/bench_searchlight.py --device cuda --threads 16 --shape 40 40 40 \
        --peer-max-centres 8000 --json searchlight.json   # GPU; rsatoolbox skipped above 8,000

Both sides get the same (X, Y, Z, s) volume, mask, radius and model RDM. rsatoolbox runs the
pipeline its searchlight demo documents: ``get_volume_searchlight`` (centres), ``get_searchlight_RDMs``
(one ``Dataset`` and RDM per centre) and ``evaluate_models_searchlight`` with ``eval_fixed``
(Spearman; a per-centre evaluation with its noise-ceiling bootstrap), and, as a leaner variant,
the same RDMs compared in one ``rdm.compare`` call (``rsatoolbox_rdms_compare_s``). cortexalign runs
``searchlight_rsa`` (centres, batched RDMs, streamed comparison) end to end, and once more with
``--n-perm`` stimulus permutations (rsatoolbox has no searchlight permutation test). Agreement:
centres must be equal, RDMs and values equal to 1e-10 (the script exits non-zero otherwise).
Each cortexalign timing is the best of ``--repeats``; rsatoolbox runs once (it is slow).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time

import numpy as np
from _timing import limit_blas_threads, timed  # noqa: E402  (sibling module: run as a script)


def _volume(shape, s, radius, seed=0):
    """Noise everywhere, plus a sphere whose patterns carry the model RDM (so the map has a peak)."""
    g = np.random.default_rng(seed)
    vol = g.standard_normal((*shape, s))
    ijk = np.argwhere(np.ones(shape, bool))
    centre = np.array(shape) // 2
    planted = np.linalg.norm(ijk - centre, axis=1) < radius
    feats = g.standard_normal((s, int(planted.sum())))
    vol[tuple(ijk[planted].T)] = feats.T + 0.5 * g.standard_normal((int(planted.sum()), s))
    return vol, feats


def _quiet(fn):
    """Run ``fn`` with rsatoolbox's tqdm bars and prints silenced."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        return fn()


def _rsatoolbox(vol, mask, radius, threshold, model_ss, evaluate: bool):
    from rsatoolbox.inference import eval_fixed
    from rsatoolbox.model import ModelFixed
    from rsatoolbox.rdm import RDMs, compare
    from rsatoolbox.util.searchlight import (
        evaluate_models_searchlight,
        get_searchlight_RDMs,
        get_volume_searchlight,
    )

    s = vol.shape[-1]
    out = {}
    t0 = time.perf_counter()
    centres, neighbours = _quiet(lambda: get_volume_searchlight(mask, radius, threshold))
    out["centres_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rdms = _quiet(lambda: get_searchlight_RDMs(vol.reshape(-1, s).T, centres, neighbours,
                                               np.arange(s), method="correlation", verbose=False))
    out["rdms_s"] = time.perf_counter() - t0
    model_rdm = RDMs(model_ss[None])
    t0 = time.perf_counter()
    values = compare(model_rdm, rdms, method="spearman")[0]
    out["compare_s"] = time.perf_counter() - t0
    if evaluate:
        t0 = time.perf_counter()
        evals = _quiet(lambda: evaluate_models_searchlight(rdms, ModelFixed("m", model_rdm),
                                                           eval_fixed, method="spearman"))
        out["evaluate_s"] = time.perf_counter() - t0
        ev = np.array([e.evaluations[0, 0, 0] for e in evals])
        out["evaluate_vs_compare"] = float(np.abs(ev - values).max())
    return centres, rdms.dissimilarities, values, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=3, default=[20, 20, 20], help="mask grid (a box)")
    p.add_argument("--radius", type=float, default=3.0)
    p.add_argument("--threshold", type=float, default=1.0)
    p.add_argument("--stimuli", type=int, default=92)
    p.add_argument("--n-perm", type=int, default=100, help="permutations of the second run")
    p.add_argument("--quick", action="store_true", help="12x12x12 mask, radius 3, 92 stimuli")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=None, help="spheres per batch (default: auto)")
    p.add_argument("--peer-max-centres", type=int, default=20_000,
                   help="skip rsatoolbox above this many voxels in the mask")
    p.add_argument("--skip-evaluate", action="store_true",
                   help="skip rsatoolbox's evaluate_models_searchlight (per-centre eval_fixed)")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.shape = [12, 12, 12]
    limit_blas_threads(args.threads)

    import torch

    from cortexalign.metrics import compute_rdm, searchlight_rdms, searchlight_rsa

    torch.set_num_threads(args.threads)
    shape, s = tuple(args.shape), args.stimuli
    mask = np.ones(shape, bool)
    vol, feats = _volume(shape, s, args.radius)
    model_ss = compute_rdm(feats, "correlation", device="cpu")
    dev_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"mask {shape} ({mask.sum()} voxels), radius {args.radius}, threshold {args.threshold}, "
          f"{s} stimuli, {args.threads} threads, device {args.device} ({dev_name}), "
          f"torch {torch.__version__}", flush=True)

    def ours(n_perm=0):
        return searchlight_rsa(vol, mask, args.radius, model_rdm_ss=model_ss,
                               threshold=args.threshold, n_perm=n_perm, device=args.device,
                               batch=args.batch)

    ours(0)  # warm-up (CUDA context, kernels)
    res, t_ours = timed(ours, args.repeats)
    res_p, t_perm = timed(lambda: ours(args.n_perm), args.repeats)
    sl = res.searchlights
    row = {"shape": list(shape), "voxels": int(mask.sum()), "centres": sl.n_centers,
           "radius": args.radius, "threshold": args.threshold, "stimuli": s,
           "device": args.device, "gpu": dev_name, "threads": args.threads,
           "cortexalign_s": t_ours, "cortexalign_perm_s": t_perm, "n_perm": args.n_perm,
           "peak_at_planted_centre": bool((sl.centers_c3[np.nanargmax(res.values_c)]
                                           == np.array(shape) // 2).all())}
    print(f"cortexalign searchlight_rsa: {sl.n_centers} centres in {t_ours:.3f} s "
          f"({t_perm:.3f} s with {args.n_perm} permutations + FDR)", flush=True)
    ok = True
    if mask.sum() <= args.peer_max_centres:
        centres, rdms_ref, values_ref, t_ref = _rsatoolbox(vol, mask, args.radius,
                                                           args.threshold, model_ss,
                                                           not args.skip_evaluate)
        rdms = searchlight_rdms(vol, sl, device=args.device, batch=args.batch)
        row.update({f"rsatoolbox_{k}": v for k, v in t_ref.items()})
        row["centres_equal"] = bool(np.array_equal(centres, sl.flat_centers()))
        row["rdm_max_abs_diff"] = float(np.abs(rdms - rdms_ref).max())
        row["value_max_abs_diff"] = float(np.abs(res.values_c - values_ref).max())
        pipeline = t_ref["centres_s"] + t_ref["rdms_s"]
        row["rsatoolbox_rdms_compare_s"] = pipeline + t_ref["compare_s"]
        print(f"rsatoolbox: centres {t_ref['centres_s']:.2f} s, RDMs {t_ref['rdms_s']:.2f} s, "
              f"one compare call {t_ref['compare_s']:.2f} s", flush=True)
        if "evaluate_s" in t_ref:
            row["rsatoolbox_pipeline_s"] = pipeline + t_ref["evaluate_s"]
            row["speedup_vs_pipeline"] = row["rsatoolbox_pipeline_s"] / t_ours
            print(f"rsatoolbox documented pipeline (evaluate_models_searchlight + eval_fixed): "
                  f"{row['rsatoolbox_pipeline_s']:.2f} s -> {row['speedup_vs_pipeline']:.1f}x",
                  flush=True)
        row["speedup_vs_compare"] = row["rsatoolbox_rdms_compare_s"] / t_ours
        print(f"rsatoolbox RDMs + one compare call: {row['rsatoolbox_rdms_compare_s']:.2f} s -> "
              f"{row['speedup_vs_compare']:.1f}x", flush=True)
        print(f"agreement: centres equal {row['centres_equal']}, RDM |diff| "
              f"{row['rdm_max_abs_diff']:.1e}, value |diff| {row['value_max_abs_diff']:.1e}")
        ok = (row["centres_equal"] and row["rdm_max_abs_diff"] < 1e-10
              and row["value_max_abs_diff"] < 1e-10)
    else:
        print(f"rsatoolbox skipped: {mask.sum()} voxels > --peer-max-centres")
    print(f"map peak at the planted centre: {row['peak_at_planted_centre']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([row], f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
