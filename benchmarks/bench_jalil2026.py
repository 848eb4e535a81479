"""Why the attention-vs-mouse config gave no score in 13 minutes: one map job, before and after.

A map job (one model block x one (area, Cre line, layer) group x one map metric) at the study's
real size: 118 scenes, a 64 x 64 token grid, 50 neurons, 1,000 permutations. Before: the
scenes were decoded and resized onto the grid in every job, and the permutation null rescaled
the model maps and rebuilt every permuted neuron map (``MAP_MEASURES`` one permutation at a
time). After: grids cached per stimulus set; the model side scaled once; Pearson's null without
the permuted maps. CPU seconds (process time), so contention on a shared box matters less.

    python benchmarks/bench_jalil2026.py [--perms 1000] [--neurons 50]
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
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
