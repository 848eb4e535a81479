"""Why the attention-vs-mouse config gave no score in 13 minutes: one map job, before and after.

A map job (one model block x one (area, Cre line, layer) group x one map metric) at the study's
real size: 118 scenes, a 64 x 64 token grid, 50 neurons, 1,000 permutations. Before: the
scenes were decoded and resized onto the grid in every job, and the permutation null rescaled
the model maps and rebuilt every permuted neuron map (``MAP_MEASURES`` one permutation at a
time). After: grids cached per stimulus set; the model side scaled once; Pearson's null without
the permuted maps. CPU seconds (process time), so contention on a shared box matters less.

    python benchmarks/bench_jalil2026.py [--perms 1000] [--neurons 50]

``--slice``: the full study's unit of work instead, for its estimate (BENCHMARKS.md): CPU
seconds of one (block, group) pair for every metric of ``PLANS["full"]`` with its options and
permutation / bootstrap counts, on one thread, at ``--size full``'s group size (42 neurons x
118 scenes x 50 trials, a 64 x 64 map).

    python benchmarks/bench_jalil2026.py --slice [--neurons 42]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _cpu(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--perms", type=int, default=1000)
    ap.add_argument("--neurons", type=int, default=50)
    ap.add_argument("--scenes", type=int, default=118)
    ap.add_argument("--slice", action="store_true",
                    help="CPU seconds of one (block, group) of the full plan, per metric")
    args = ap.parse_args()
    if args.slice:
        return full_plan_slice(args.neurons, args.scenes)
    from cortexalign.metrics._map_metric import map_permutation_null
    from cortexalign.metrics._maps import MAP_MEASURES
    from cortexalign.neural import stimuli_on_grid
    from cortexalign.neural._maps import WEIGHTINGS
    from cortexalign.stimuli import StimulusSet
    from cortexalign.studies.jalil2026._scenes import scene_images

    rng = np.random.default_rng(0)
    s, n, p = args.scenes, args.neurons, 64 * 64
    maps = rng.random((s, 64, 64))
    r_sn, img_sp = rng.normal(size=(s, n)), rng.normal(size=(s, p))
    w_ns = WEIGHTINGS["zscore"](r_sn.T)
    print(f"one map job: {s} scenes, {n} neurons, 64 x 64 grid, {args.perms} permutations")
    for measure in ("pearson", "rmse"):
        def before(m=measure):
            g = np.random.default_rng(0)
            return [np.median(MAP_MEASURES[m](maps.reshape(s, -1), w_ns @ img_sp[g.permutation(s)],
                                              "minmax")) for _ in range(args.perms)]

        def after(m=measure):
            return map_permutation_null(maps, r_sn, img_sp, measure=m, scaling="minmax",
                                        weighting="zscore", n_permutations=args.perms)
        print(f"  null {measure:8s} before {_cpu(before):7.2f} s  after {_cpu(after):7.2f} s")
    images = scene_images(s, (918, 1174), seed=0)
    stimuli = StimulusSet.from_arrays(images)
    first = _cpu(lambda: stimuli_on_grid(stimuli, (64, 64), pad_square=True))
    again = _cpu(lambda: stimuli_on_grid(stimuli, (64, 64), pad_square=True))
    print(f"  scenes onto the grid: first job {first:.2f} s, every later job {again:.3f} s "
          "(was the first job's cost each time)")


def full_plan_slice(n_neurons: int, n_scenes: int) -> None:
    """Per metric of the full plan: CPU seconds of one (block, group) pair, one thread."""
    import os

    import xarray as xr
    from threadpoolctl import threadpool_limits

    from cortexalign.metrics import PERMUTATION_TESTS, score
    from cortexalign.stimuli import StimulusSet
    from cortexalign.studies.jalil2026 import PLANS
    from cortexalign.studies.jalil2026._scenes import scene_images
    os.environ["CORTEXALIGN_THREADS"] = "1"  # the thread policy's count, for every measure
    plan = PLANS["full"]
    rng = np.random.default_rng(0)
    stimuli = StimulusSet.from_arrays(scene_images(n_scenes, (918, 1174), seed=0))
    maps = rng.random((n_scenes, 64, 64)).astype(np.float32)
    reps = 1.0 + rng.normal(size=(n_scenes, n_neurons, 50))
    target = xr.DataArray(reps, dims=("stimulus", "neuroid", "repetition"),
                          coords={"stimulus": list(stimuli.ids),
                                  "neuroid": [f"n{i}" for i in range(n_neurons)]})
    print(f"one (block, group) of the full plan: {n_scenes} scenes, {n_neurons} neurons x 50 "
          f"trials, 64 x 64 map, {plan.n_permutations} permutations, {plan.n_bootstrap} "
          "bootstraps; CPU seconds, one thread")
    total = 0.0
    with threadpool_limits(1):
        for metric in plan.metrics:
            name, opts = metric["name"], dict(metric.get("options", {}))
            x = maps if name.startswith("map_") else maps.reshape(n_scenes, -1)
            extra = {"stimuli": stimuli, "pad_square": True} if name.startswith("map_") else {}
            if name.startswith("map_"):
                opts.setdefault("n_permutations", plan.n_permutations)

            def run(name=name, x=x, opts=opts, extra=extra):
                score(name, x, target, n_bootstrap=plan.n_bootstrap, seed=0, **opts, **extra)
                if name in PERMUTATION_TESTS:
                    PERMUTATION_TESTS[name](x, target, n_permutations=plan.n_permutations,
                                            seed=0, **opts)
            run()  # warm: the grids of the scenes, kept per stimulus set
            seconds = _cpu(run)
            total += seconds
            print(f"  {name:13s} {seconds:7.2f} s")
    print(f"  {'all':13s} {total:7.2f} s per (block, group)")


if __name__ == "__main__":
    main()
