"""Ridge encoding: cortexalign vs scikit-learn RidgeCV vs plain himalaya, same data, same splits.

    python benchmarks/bench_ridge.py --size quick            # 118 stimuli x 1,000 features x 2,000 neuroids
    python benchmarks/bench_ridge.py --size full --device cuda  # 1,000 x 10,000 x 20,000
    python benchmarks/bench_ridge.py --size issue9 --n-alphas 11 --skip-sklearn --json r.json
        # issue 9's target size: 2,000 x 8,000 x 20,000, 5 folds, 11 penalties

All three fit, on each of the same 5 outer folds over stimuli, a ridge with an intercept and a
penalty per neuroid chosen from the same alphas (21 by default, ``--n-alphas``), then predict the held-out stimuli:

- cortexalign: ``metrics._encoding.cross_validated_predictions`` (himalaya solver, inner 5-fold CV);
- himalaya: ``himalaya.ridge.RidgeCV(cv=5)`` called directly, same inner splitter;
- scikit-learn: ``RidgeCV(alpha_per_target=True)``, efficient leave-one-out inner CV (its fast
  path; a K-fold ``cv`` would not allow a penalty per target), on the CPU.

Reported: wall time per method, the ratio to cortexalign, and the agreement of the held-out
predictions (max |difference| and the median over neuroids of the correlation between the two
methods' predictions). cortexalign and himalaya should agree to rounding; scikit-learn differs
only where LOO and 5-fold inner CV choose different penalties.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold

from cortexalign.device import resolve_device
from cortexalign.metrics._encoding import (
    DEFAULT_ALPHAS,
    cross_validated_predictions,
    himalaya_backend,
)

SIZES = {"quick": (118, 1_000, 2_000), "full": (1_000, 10_000, 20_000),
         "issue9": (2_000, 8_000, 20_000)}


def make_data(s: int, d: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features with a decaying spectrum; neuroids = sparse linear readouts + noise of varied size."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(s, d)) * (1.0 / np.sqrt(1 + np.arange(d)))
    w = rng.normal(size=(d, n)) * (rng.random((d, n)) < 0.05)
    y = x @ w
    y += rng.normal(size=(s, n)) * y.std(0) * rng.uniform(0.3, 3.0, n)
    return x, y


def run_himalaya(x, y, folds, device, seed, alphas=DEFAULT_ALPHAS, dtype=torch.float64):
    from himalaya.ridge import RidgeCV as HRidgeCV

    pred = np.empty_like(y)
    with himalaya_backend(device) as bk:
        for k, (tr, te) in enumerate(folds):
            model = HRidgeCV(alphas=alphas, fit_intercept=True,
                             cv=KFold(5, shuffle=True, random_state=seed + k),
                             solver_params={"warn": False})
            model.fit(torch.as_tensor(x[tr], device=device, dtype=dtype),
                      torch.as_tensor(y[tr], device=device, dtype=dtype))
            pred[te] = bk.to_numpy(model.predict(torch.as_tensor(x[te], device=device, dtype=dtype)))
    return pred


def run_sklearn(x, y, folds, alphas=DEFAULT_ALPHAS):
    pred = np.empty_like(y)
    for tr, te in folds:
        pred[te] = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[tr], y[tr]).predict(x[te])
    return pred


def agreement(a, b):
    ac, bc = a - a.mean(0), b - b.mean(0)
    r = (ac * bc).sum(0) / np.sqrt((ac**2).sum(0) * (bc**2).sum(0))
    return {"max_abs_diff": float(np.abs(a - b).max()), "median_r": float(np.median(r))}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="quick")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-sklearn", action="store_true", help="skip the (slow at full size) CPU run")
    ap.add_argument("--n-alphas", type=int, default=len(DEFAULT_ALPHAS),
                    help="penalties, log-spaced over 1e-3..1e7")
    ap.add_argument("--json", help="also write the report to this file")
    args = ap.parse_args()
    alphas = np.logspace(-3, 7, args.n_alphas)
    s, d, n = SIZES[args.size]
    device = resolve_device(args.device)
    x, y = make_data(s, d, n)
    folds = list(KFold(5, shuffle=True, random_state=0).split(x))
    # warm up torch / himalaya once (first-call costs would otherwise land on whichever runs first)
    cross_validated_predictions(x[:20, :10], y[:20, :3], "ridge", n_folds=2, inner_folds=2,
                                device=device)
    ours, t_ours = timed(lambda: cross_validated_predictions(x, y, "ridge", n_folds=5, seed=0,
                                                              device=device, alphas=alphas)[0])
    him, t_him = timed(lambda: run_himalaya(x, y, folds, device, 0, alphas))
    report = {"size": args.size, "stimuli": s, "features": d, "neuroids": n,
              "n_alphas": len(alphas), "outer_folds": 5, "inner_folds": 5,
              "device": str(device), "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "torch_threads": torch.get_num_threads(),
              "seconds": {"cortexalign": t_ours, "himalaya": t_him},
              "ratio_to_cortexalign": {"himalaya": t_him / t_ours},
              "agreement": {"himalaya": agreement(ours, him)}}
    if device.type == "cuda":  # himalaya's advice on the GPU: float32 (cortexalign solves in float64)
        him32, t_him32 = timed(lambda: run_himalaya(x, y, folds, device, 0, alphas, torch.float32))
        report["seconds"]["himalaya_float32"] = t_him32
        report["ratio_to_cortexalign"]["himalaya_float32"] = t_him32 / t_ours
        report["agreement"]["himalaya_float32"] = agreement(ours, him32)
    if not args.skip_sklearn:
        skl, t_skl = timed(lambda: run_sklearn(x, y, folds, alphas))
        report["seconds"]["sklearn_RidgeCV"] = t_skl
        report["ratio_to_cortexalign"]["sklearn_RidgeCV"] = t_skl / t_ours
        report["agreement"]["sklearn_RidgeCV"] = agreement(ours, skl)
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
