"""Ridge encoding: cortexalign vs scikit-learn RidgeCV vs plain himalaya, same data, same splits.

    python benchmarks/bench_ridge.py --size quick            # 118 stimuli x 1,000 features x 2,000 neuroids
    python benchmarks/bench_ridge.py --size full --device cuda  # 1,000 x 10,000 x 20,000

All three fit, on each of the same 5 outer folds over stimuli, a ridge with an intercept and a
penalty per neuroid chosen from the same 21 alphas, then predict the held-out stimuli:

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

SIZES = {"quick": (118, 1_000, 2_000), "full": (1_000, 10_000, 20_000)}


def make_data(s: int, d: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features with a decaying spectrum; neuroids = sparse linear readouts + noise of varied size."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(s, d)) * (1.0 / np.sqrt(1 + np.arange(d)))
    w = rng.normal(size=(d, n)) * (rng.random((d, n)) < 0.05)
    y = x @ w
    y += rng.normal(size=(s, n)) * y.std(0) * rng.uniform(0.3, 3.0, n)
    return x, y


def run_himalaya(x, y, folds, device, seed):
    from himalaya.ridge import RidgeCV as HRidgeCV

    pred = np.empty_like(y)
    with himalaya_backend(device) as bk:
        for k, (tr, te) in enumerate(folds):
            model = HRidgeCV(alphas=DEFAULT_ALPHAS, fit_intercept=True,
                             cv=KFold(5, shuffle=True, random_state=seed + k),
                             solver_params={"warn": False})
            model.fit(torch.as_tensor(x[tr], device=device), torch.as_tensor(y[tr], device=device))
            pred[te] = bk.to_numpy(model.predict(torch.as_tensor(x[te], device=device)))
    return pred


def run_sklearn(x, y, folds):
    pred = np.empty_like(y)
    for tr, te in folds:
        pred[te] = RidgeCV(alphas=DEFAULT_ALPHAS, alpha_per_target=True).fit(x[tr], y[tr]).predict(x[te])
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
    args = ap.parse_args()
    s, d, n = SIZES[args.size]
    device = resolve_device(args.device)
    x, y = make_data(s, d, n)
    folds = list(KFold(5, shuffle=True, random_state=0).split(x))
    # warm up torch / himalaya once (first-call costs would otherwise land on whichever runs first)
    cross_validated_predictions(x[:20, :10], y[:20, :3], "ridge", n_folds=2, inner_folds=2,
                                device=device)
    ours, t_ours = timed(lambda: cross_validated_predictions(x, y, "ridge", n_folds=5, seed=0,
                                                              device=device)[0])
    him, t_him = timed(lambda: run_himalaya(x, y, folds, device, 0))
    report = {"size": args.size, "stimuli": s, "features": d, "neuroids": n,
              "device": str(device), "torch_threads": torch.get_num_threads(),
              "seconds": {"cortexalign": t_ours, "himalaya": t_him},
              "ratio_to_cortexalign": {"himalaya": t_him / t_ours},
              "agreement": {"himalaya": agreement(ours, him)}}
    if not args.skip_sklearn:
        skl, t_skl = timed(lambda: run_sklearn(x, y, folds))
        report["seconds"]["sklearn_RidgeCV"] = t_skl
        report["ratio_to_cortexalign"]["sklearn_RidgeCV"] = t_skl / t_ours
        report["agreement"]["sklearn_RidgeCV"] = agreement(ours, skl)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
