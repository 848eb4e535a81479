"""Second-order analyses at real sizes: how long alignment patterns and discriminability take.

    python benchmarks/bench_second_order.py                 # Allen-like and NSD-like sizes
    python benchmarks/bench_second_order.py --json so.json

Sizes (simulated data with the shapes of the real sets; there is no peer library to compare):

- ``patterns``: ``alignment_patterns`` of 8 layers against ``--regions`` regions x
  ``--subjects`` subjects over 118 stimuli (the Allen natural scenes), best layer per region,
  1,000 stimulus permutations, 200 stimulus + subject resamples. Split into the brain matrix and
  ceiling, the permutation test and the bootstrap.
- ``discriminability``: ``bootstrap_model_scores`` of 10 models x 8 layers against 4 subject
  RDMs over 118 stimuli, 200 paired resamples, both layer rules (``cv`` with 5 folds
  evaluates 11 weightings per resample).

Times are wall clock on this machine, one process, after one warm-up call at small size.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cortexalign.analyses import (
    alignment_patterns,
    bootstrap_model_scores,
    region_rdms,
    simulate_regions,
)
from cortexalign.neural import RDMSet


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def patterns(n_regions: int, n_subjects: int, n_stimuli: int = 118) -> dict[str, float]:
    data = simulate_regions(n_stimuli=n_stimuli, n_regions=n_regions, n_subjects=n_subjects,
                            n_neuroids=50, seed=0)
    rdms = region_rdms(data, "area")
    rng = np.random.default_rng(1)
    layers = {f"l{k}": rng.standard_normal((n_stimuli, 256)) for k in range(8)}
    out = {"brain": _time(lambda: alignment_patterns(layers, rdms, n_permutations=0))}
    out["permutations_1000"] = _time(lambda: alignment_patterns(
        layers, rdms, n_permutations=1000)) - out["brain"]
    out["bootstrap_200"] = _time(lambda: alignment_patterns(
        layers, rdms, n_permutations=0, n_bootstrap=200)) - out["brain"]
    return out


def discriminability(n_models: int = 10, n_layers: int = 8, n_stimuli: int = 118,
                     n_bootstrap: int = 200) -> dict[str, float]:
    rng = np.random.default_rng(2)
    z = rng.standard_normal((n_stimuli, 10))
    rdms = np.stack([1 - np.corrcoef(z @ rng.standard_normal((10, 40))
                                     + rng.standard_normal((n_stimuli, 40))) for _ in range(4)])
    target = RDMSet(rdms, [f"s{i}" for i in range(n_stimuli)], {"subject": np.arange(4)})
    models = {f"m{i}": {f"l{j}": rng.standard_normal((n_stimuli, 128)) for j in range(n_layers)}
              for i in range(n_models)}
    return {rule: _time(lambda rule=rule: bootstrap_model_scores(
        models, target, rule=rule, n_bootstrap=n_bootstrap)) for rule in ("best", "cv")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, nargs="+", default=[6, 24])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    patterns(4, 3, 30)  # warm-up (imports, first calls)
    results = {}
    for r in args.regions:
        results[f"patterns_{r}x{args.subjects}"] = res = patterns(r, args.subjects)
        print(f"patterns, {r} regions x {args.subjects} subjects, 118 stimuli, 8 layers: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in res.items()), flush=True)
    results["discriminability"] = res = discriminability()
    print("discriminability, 10 models x 8 layers, 4 subjects, 118 stimuli, 200 resamples: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in res.items()), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
