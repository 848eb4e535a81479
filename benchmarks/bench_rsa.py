"""RDM + comparison: cortexalign vs rsatoolbox on the same random data.

    python benchmarks/bench_rsa.py                       # 92, 500, 1000, 2500 stimuli x 10,000 features
    python benchmarks/bench_rsa.py --quick               # small sizes, seconds
    python benchmarks/bench_rsa.py --sizes 92 500 --features 2000 --threads 2 --device cpu

Times one model RDM (``correlation`` by default) and its comparison (``spearman`` by default) with
a fixed target RDM, as an RSA scoring step does; checks both libraries give the same RDM and the
same comparison; prints a table with the speed-up. Each timing is the best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[92, 500, 1000, 2500])
    p.add_argument("--features", type=int, default=10_000)
    p.add_argument("--quick", action="store_true", help="sizes 92 and 300, 1,000 features")
    p.add_argument("--rdm-method", default="correlation", choices=["correlation", "euclidean"])
    p.add_argument("--compare", default="spearman", choices=["spearman", "pearson", "cosine"])
    p.add_argument("--threads", type=int, default=2, help="torch and BLAS threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.features = [92, 300], 1_000
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy/torch load their BLAS

    import rsatoolbox
    import torch

    from cortexalign.metrics import compare_rdms, compute_rdm

    torch.set_num_threads(args.threads)
    rsa_compare = {"spearman": "spearman", "pearson": "corr", "cosine": "cosine"}[args.compare]
    rng = np.random.default_rng(0)
    print(f"{args.rdm_method} RDM + {args.compare} comparison, {args.features} features, "
          f"{args.threads} threads, device {args.device}")
    print(f"{'stimuli':>8} {'cortexalign s':>14} {'rsatoolbox s':>13} {'speed-up':>9} "
          f"{'max |dRDM|':>11} {'|d compare|':>12}")
    for s in args.sizes:
        x = rng.normal(size=(s, args.features)) + rng.normal(size=(s, 1))
        target = compute_rdm(rng.normal(size=(s, 50)), "euclidean", device="cpu")
        target_rsa = rsatoolbox.rdm.RDMs(target[None])

        def ours(x=x, target=target):
            rdm = compute_rdm(x, args.rdm_method, device=args.device)
            return rdm, compare_rdms(rdm, target, args.compare, device=args.device)[0, 0]

        def theirs(x=x, target_rsa=target_rsa):
            rdm = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=args.rdm_method)
            return rdm, rsatoolbox.rdm.compare(rdm, target_rsa, rsa_compare)[0, 0]

        t_ours, (rdm_o, c_o) = _best(ours, args.repeats)
        t_rsa, (rdm_r, c_r) = _best(theirs, args.repeats)
        d_rdm = float(np.abs(rdm_o - rdm_r.get_matrices()[0]).max())
        print(f"{s:>8} {t_ours:>14.3f} {t_rsa:>13.3f} {t_rsa / t_ours:>8.1f}x {d_rdm:>11.1e} "
              f"{abs(c_o - c_r):>12.1e}", flush=True)


if __name__ == "__main__":
    main()
