"""Banded ridge: cortexalign's solver vs himalaya, same data, same candidates, same inner splits.

    OMP_NUM_THREADS=2 python benchmarks/bench_banded.py --quick --device cpu   # 200 x (100,200,300)
    OMP_NUM_THREADS=2 python benchmarks/bench_banded.py --device cpu   # 600 x (200,500,1000) x 1,000
    python benchmarks/bench_banded.py --stimuli 2000 --spaces 2000 4000 8000 --targets 20000 \\
        --device cuda

One fit on ``--stimuli`` training rows, predictions for ``--test`` rows; every method searches the
same ``--n-iter`` candidate gammas (``banded_gammas(n_iter, m, seed=0)``, passed to himalaya as an
explicit array, so the Dirichlet draws are identical) x ``--n-alphas`` penalties (log-spaced over
1e-3..1e7), per target, by the same ``KFold(5, shuffle=True, random_state=0)``, with an intercept:

- ``ours``: ``solve_banded_ridge_cv`` (per-space Grams once, per candidate an eigh per inner fold
  of the weighted kernel; float64);
- ``himalaya_BandedRidgeCV``: ``himalaya.ridge.BandedRidgeCV(groups="input")`` (primal: an SVD of
  the scaled (s, sum d) features per candidate and inner fold), float64, the reference;
- ``himalaya_MultipleKernelRidgeCV``: ``himalaya.kernel_ridge.MultipleKernelRidgeCV(
  kernels="precomputed")`` (the kernel formulation himalaya recommends when s < sum d), float64;
  the linear kernels are formed inside its timing.

Both himalaya methods run on the ``torch`` backend (``torch_cuda`` with ``--device cuda``).
Reported: wall time per method (best of ``--repeats``), each time over ``ours`` (``> 1``: ours is
faster), and agreement with the reference: max |prediction difference|, the fraction of targets
whose chosen gamma or alpha differs.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from _timing import timed  # sibling module: run as a script
from sklearn.model_selection import KFold

from cortexalign.device import resolve_device
from cortexalign.metrics._banded import banded_gammas, solve_banded_ridge_cv
from cortexalign.metrics._ridge_solvers import himalaya_backend

REFERENCE = "himalaya_BandedRidgeCV"
QUICK = dict(stimuli=200, spaces=[100, 200, 300], targets=300, n_iter=10)


def make_data(s: int, t: int, ds: list[int], n: int, seed: int = 0):
    """Spaces with decaying spectra; each target driven by a random mix of the spaces + noise."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(s + t, d)) / np.sqrt(1 + np.arange(d)) for d in ds]
    mix = rng.dirichlet([0.3] * len(ds), n)  # (n, m) how much each space drives each target
    y = sum(x @ rng.normal(size=(x.shape[1], n)) * mix[:, i] for i, x in enumerate(xs))
    y += rng.normal(size=(s + t, n)) * y.std(0) * rng.uniform(0.3, 3.0, n)
    return [x[:s] for x in xs], y[:s], [x[s:] for x in xs]


def run_ours(xs, y, xt, device, gammas, alphas):
    fit = solve_banded_ridge_cv([torch.as_tensor(x, device=device) for x in xs],
                                torch.as_tensor(y, device=device),
                                [torch.as_tensor(x, device=device) for x in xt], alphas=alphas,
                                gammas=gammas, inner_folds=5, seed=0)
    return fit.pred_tn.cpu().numpy(), fit.gamma_nm.cpu().numpy(), fit.alpha_n.cpu().numpy()


def run_banded(xs, y, xt, device, gammas, alphas):
    from himalaya.ridge import BandedRidgeCV

    with himalaya_backend(device) as bk:
        t = [torch.as_tensor(x, device=device) for x in xs]
        model = BandedRidgeCV(groups="input", fit_intercept=True,
                              cv=KFold(5, shuffle=True, random_state=0),
                              solver_params=dict(n_iter=gammas, alphas=alphas, warn=False,
                                                 progress_bar=False))
        model.fit(t, torch.as_tensor(y, device=device))
        pred = bk.to_numpy(model.predict([torch.as_tensor(x, device=device) for x in xt]))
        alpha_n = bk.to_numpy(model.best_alphas_)
        return pred, (np.exp(bk.to_numpy(model.deltas_)) * alpha_n).T, alpha_n


def run_mkr(xs, y, xt, device, gammas, alphas):
    from himalaya.kernel_ridge import MultipleKernelRidgeCV

    with himalaya_backend(device) as bk:
        t = [torch.as_tensor(x, device=device) for x in xs]
        tt = [torch.as_tensor(x, device=device) for x in xt]
        k_mss = torch.stack([x @ x.T for x in t])
        k_mts = torch.stack([a @ x.T for a, x in zip(tt, t, strict=True)])
        model = MultipleKernelRidgeCV(kernels="precomputed", fit_intercept=True,
                                      cv=KFold(5, shuffle=True, random_state=0),
                                      solver_params=dict(n_iter=gammas, alphas=alphas,
                                                         progress_bar=False))
        model.fit(k_mss, torch.as_tensor(y, device=device))
        pred = bk.to_numpy(model.predict(k_mts))
        alpha_n = bk.to_numpy(model.best_alphas_)
        return pred, (np.exp(bk.to_numpy(model.deltas_)) * alpha_n).T, alpha_n


def agreement(a, b):
    pred, gam, alp = a
    ref_pred, ref_gam, ref_alp = b
    return {"max_abs_diff": float(np.abs(pred - ref_pred).max()),
            "gammas_differ": float(np.mean(np.abs(gam - ref_gam).max(1) > 1e-9)),
            "alphas_differ": float(np.mean(~np.isclose(alp, ref_alp, rtol=1e-6)))}



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small CPU size: " + str(QUICK))
    ap.add_argument("--stimuli", type=int, default=600)
    ap.add_argument("--test", type=int, default=100, help="test rows predicted")
    ap.add_argument("--spaces", type=int, nargs="+", default=[200, 500, 1000],
                    help="features of each space")
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--n-iter", type=int, default=20, help="candidate gammas")
    ap.add_argument("--n-alphas", type=int, default=11)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--methods", nargs="+", help="run only these (the reference always runs)")
    ap.add_argument("--json", help="also write the report to this file")
    args = ap.parse_args()
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    device = resolve_device(args.device)
    alphas = np.logspace(-3, 7, args.n_alphas)
    gammas = banded_gammas(args.n_iter, len(args.spaces), seed=0)
    xs, y, xt = make_data(args.stimuli, args.test, args.spaces, args.targets)
    methods = {"ours": run_ours, REFERENCE: run_banded, "himalaya_MultipleKernelRidgeCV": run_mkr}
    if args.methods:
        unknown = set(args.methods) - set(methods)
        if unknown:
            ap.error(f"unknown --methods {sorted(unknown)}; choose from {sorted(methods)}")
        methods = {k: v for k, v in methods.items() if k in {*args.methods, REFERENCE}}
    # warm-up: first-call costs (torch, himalaya imports) would land on whichever runs first
    small = ([x[:30, :5] for x in xs], y[:30, :3], [x[:4, :5] for x in xt])
    for fn in methods.values():
        fn(*small, device, gammas[:2], alphas[:2])
    results, seconds = {}, {}
    for name, fn in methods.items():
        results[name], seconds[name] = timed(lambda fn=fn: fn(xs, y, xt, device, gammas, alphas),
                                             args.repeats)
        print(f"{name:>32}: {seconds[name]:8.3f} s", flush=True)
    report = {"stimuli": args.stimuli, "test": args.test, "spaces": args.spaces,
              "targets": args.targets, "candidates": args.n_iter, "n_alphas": args.n_alphas,
              "inner_folds": 5, "device": str(device), "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "seconds": seconds,
              "time_over_ours": ({k: v / seconds["ours"] for k, v in seconds.items()}
                                 if "ours" in seconds else None),
              f"agreement_with_{REFERENCE}": {k: agreement(r, results[REFERENCE])
                                              for k, r in results.items() if k != REFERENCE}}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
