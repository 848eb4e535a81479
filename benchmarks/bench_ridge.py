"""Ridge encoding with per-target penalties: cortexalign's solver vs himalaya, same data, same splits.

    python benchmarks/bench_ridge.py --size quick                 # 118 x 1,000 x 2,000, CPU
    python benchmarks/bench_ridge.py --size cpu --n-alphas 11 --skip-sklearn   # 1,000 x 4,000 x 5,000
    python benchmarks/bench_ridge.py --size issue9 --n-alphas 11 --skip-sklearn --device cuda
        # issue 9's target size: 2,000 x 8,000 x 20,000, 5 folds, 11 penalties
    python benchmarks/bench_ridge.py --shape 500 2000 3000 ...    # any (stimuli, features, targets)

Every method fits, on each of the same 5 outer folds over stimuli, a ridge with an intercept and a
penalty per neuroid chosen from the same alphas by the same inner 5-fold splits, then predicts the
held-out stimuli:

- ``eigh`` (cortexalign's default): ``cross_validated_predictions(..., solver="eigh")``, Gram
  eigendecomposition on the device, float64 (``eigh_float32``: products with the targets in float32);
- ``himalaya_path``: ``cross_validated_predictions(..., solver="himalaya")`` (``solve_ridge_cv_svd``,
  float64; cortexalign's solver before issue 9's work);
- ``himalaya_RidgeCV_float64`` / ``_float32``: ``himalaya.ridge.RidgeCV(cv=KFold(5, ...))`` called
  directly on the torch / torch_cuda backend;
- ``sklearn_RidgeCV`` (unless ``--skip-sklearn``): ``RidgeCV(alpha_per_target=True)``, leave-one-out
  inner CV (its fast path), so its penalties differ where LOO and 5-fold disagree.

Reported: wall time per method (best of ``--repeats`` after a warm-up), each method's time over the
``eigh`` time (``> 1``: ``eigh`` is faster), and the agreement of each method's held-out predictions
with himalaya ``RidgeCV`` float64 (max |difference|, median over neuroids of the correlation, and the
fraction of chosen penalties that differ where the method reports them).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from _timing import timed  # sibling module: run as a script
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold

from cortexalign.device import resolve_device
from cortexalign.metrics._encoding import (
    DEFAULT_ALPHAS,
    cross_validated_predictions,
    himalaya_backend,
)

SIZES = {"quick": (118, 1_000, 2_000), "cpu": (1_000, 4_000, 5_000),
         "full": (1_000, 10_000, 20_000), "issue9": (2_000, 8_000, 20_000)}
REFERENCE = "himalaya_RidgeCV_float64"


def make_data(s: int, d: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features with a decaying spectrum; neuroids = sparse linear readouts + noise of varied size."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(s, d)) * (1.0 / np.sqrt(1 + np.arange(d)))
    w = rng.normal(size=(d, n)) * (rng.random((d, n)) < 0.05)
    y = x @ w
    y += rng.normal(size=(s, n)) * y.std(0) * rng.uniform(0.3, 3.0, n)
    return x, y


def run_ours(x, y, device, alphas, **options):
    """(pred (s, n), chosen alphas (folds, n)) from cortexalign's outer CV (seed 0: same splits)."""
    return cross_validated_predictions(x, y, "ridge", n_folds=5, seed=0, device=device,
                                       alphas=alphas, **options)


def run_himalaya(x, y, folds, device, alphas, dtype):
    from himalaya.ridge import RidgeCV as HRidgeCV

    pred, chosen = np.empty_like(y), []
    with himalaya_backend(device) as bk:
        for k, (tr, te) in enumerate(folds):
            model = HRidgeCV(alphas=alphas, fit_intercept=True,
                             cv=KFold(5, shuffle=True, random_state=k),
                             solver_params={"warn": False})
            model.fit(torch.as_tensor(x[tr], device=device, dtype=dtype),
                      torch.as_tensor(y[tr], device=device, dtype=dtype))
            pred[te] = bk.to_numpy(model.predict(torch.as_tensor(x[te], device=device, dtype=dtype)))
            chosen.append(bk.to_numpy(model.best_alphas_))
    return pred, np.stack(chosen)


def run_sklearn(x, y, folds, alphas):
    pred = np.empty_like(y)
    for tr, te in folds:
        pred[te] = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[tr], y[tr]).predict(x[te])
    return pred, None


def agreement(a, b, alpha_a=None, alpha_b=None):
    ac, bc = a - a.mean(0), b - b.mean(0)
    r = (ac * bc).sum(0) / np.sqrt((ac**2).sum(0) * (bc**2).sum(0))
    out = {"max_abs_diff": float(np.abs(a - b).max()), "median_r": float(np.median(r))}
    if alpha_a is not None and alpha_b is not None:
        out["alphas_differ"] = float(np.mean(~np.isclose(alpha_a, alpha_b, rtol=1e-6)))
    return out



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="quick")
    ap.add_argument("--shape", type=int, nargs=3, metavar=("S", "D", "N"),
                    help="stimuli, features, targets (overrides --size)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-sklearn", action="store_true", help="skip the (slow at full size) CPU run")
    ap.add_argument("--n-alphas", type=int, default=len(DEFAULT_ALPHAS),
                    help="penalties, log-spaced over 1e-3..1e7")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per method (best reported)")
    ap.add_argument("--methods", nargs="+", help="run only these (the float64 reference always runs)")
    ap.add_argument("--json", help="also write the report to this file")
    args = ap.parse_args()
    alphas = np.logspace(-3, 7, args.n_alphas)
    s, d, n = args.shape or SIZES[args.size]
    device = resolve_device(args.device)
    x, y = make_data(s, d, n)
    folds = list(KFold(5, shuffle=True, random_state=0).split(x))
    methods = {
        "eigh": lambda: run_ours(x, y, device, alphas),
        "eigh_float32": lambda: run_ours(x, y, device, alphas, dtype=torch.float32),
        "himalaya_path": lambda: run_ours(x, y, device, alphas, solver="himalaya"),
        REFERENCE: lambda: run_himalaya(x, y, folds, device, alphas, torch.float64),
        "himalaya_RidgeCV_float32": lambda: run_himalaya(x, y, folds, device, alphas,
                                                         torch.float32),
    }
    if not args.skip_sklearn:
        methods["sklearn_RidgeCV"] = lambda: run_sklearn(x, y, folds, alphas)
    if args.methods:
        unknown = set(args.methods) - set(methods)
        if unknown:
            ap.error(f"unknown --methods {sorted(unknown)}; choose from {sorted(methods)}")
        methods = {k: v for k, v in methods.items() if k in {*args.methods, REFERENCE}}
    # warm up torch / himalaya once (first-call costs would otherwise land on whichever runs first)
    for solver in ("eigh", "himalaya"):
        cross_validated_predictions(x[:20, :10], y[:20, :3], "ridge", n_folds=2, inner_folds=2,
                                    device=device, solver=solver)
    results, seconds = {}, {}
    for name, fn in methods.items():
        results[name], seconds[name] = timed(fn, args.repeats)
        print(f"{name:>26}: {seconds[name]:8.3f} s", flush=True)
    ref_pred, ref_alpha = results[REFERENCE]
    report = {"stimuli": s, "features": d, "neuroids": n, "n_alphas": len(alphas),
              "outer_folds": 5, "inner_folds": 5, "device": str(device),
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "seconds": seconds,
              "time_over_eigh": ({k: v / seconds["eigh"] for k, v in seconds.items()}
                                 if "eigh" in seconds else None),
              f"agreement_with_{REFERENCE}": {
                  k: agreement(p, ref_pred, a, ref_alpha) for k, (p, a) in results.items()
                  if k != REFERENCE}}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
