"""CKA: cortexalign vs a direct numpy implementation of the published formulas.

    python benchmarks/bench_cka.py                  # 92, 500, 1000, 2500 stimuli; 10,000 x 500 dims
    python benchmarks/bench_cka.py --quick          # small sizes, seconds

The numpy side is what a paper's supplementary code does: Gram matrices, centring by row and column
means, HSIC as the Frobenius product (Kornblith et al. 2019); Song et al. 2012's unbiased HSIC term
by term; the RBF kernel with bandwidth = median distance. Each timing is the best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _timing import best_of, limit_blas_threads  # noqa: E402  (sibling module: run as a script)


def _center(k):
    return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()


def _hsic_song(k, l_):
    n = k.shape[0]
    kt, lt = k - np.diag(np.diag(k)), l_ - np.diag(np.diag(l_))
    one = np.ones(n)
    return (np.sum(kt * lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (kt @ one) @ (lt @ one)) / (n * (n - 3))


def _rbf(x, frac=1.0):
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0)
    return np.exp(-d2 / (2 * frac**2 * np.median(d2)))


def numpy_cka(x, y, kind):
    x, y = x - x.mean(0), y - y.mean(0)
    if kind == "linear_debiased":
        k, l_ = x @ x.T, y @ y.T
        return _hsic_song(k, l_) / np.sqrt(_hsic_song(k, k) * _hsic_song(l_, l_))
    k, l_ = (x @ x.T, y @ y.T) if kind == "linear" else (_rbf(x), _rbf(y))
    kc, lc = _center(k), _center(l_)
    return np.sum(kc * lc) / np.sqrt(np.sum(kc * kc) * np.sum(lc * lc))



def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[92, 500, 1000, 2500])
    p.add_argument("--features", type=int, default=10_000, help="model feature width")
    p.add_argument("--neuroids", type=int, default=500, help="neural response width")
    p.add_argument("--kinds", nargs="+", default=["linear", "linear_debiased", "rbf"])
    p.add_argument("--quick", action="store_true", help="sizes 92 and 300, 1,000 x 200 dims")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.features, args.neuroids = [92, 300], 1_000, 200
    limit_blas_threads(args.threads)

    import torch

    from cortexalign.metrics import cka

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    dev_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"{args.features} model features x {args.neuroids} neuroids, {args.threads} threads, "
          f"device {args.device} ({dev_name}), torch {torch.__version__}")
    rows = []
    print(f"{'kind':>16} {'stimuli':>8} {'cortexalign s':>14} {'numpy s':>9} {'speed-up':>9} "
          f"{'|diff|':>9}")
    for s in args.sizes:
        x = rng.normal(size=(s, args.features))
        y = x[:, :50] @ rng.normal(size=(50, args.neuroids)) + rng.normal(size=(s, args.neuroids))
        for kind in args.kinds:
            cka(x[:20], y[:20], kind, device=args.device)  # warm-up (CUDA context, kernels)
            t_o, v_o = best_of(lambda: cka(x, y, kind, device=args.device), args.repeats)  # noqa: B023
            t_n, v_n = best_of(lambda: numpy_cka(x, y, kind), args.repeats)  # noqa: B023
            print(f"{kind:>16} {s:>8} {t_o:>14.3f} {t_n:>9.3f} {t_n / t_o:>8.1f}x "
                  f"{abs(v_o - v_n):>9.1e}", flush=True)
            rows.append({"kind": kind, "stimuli": s, "features": args.features,
                         "neuroids": args.neuroids, "device": args.device, "gpu": dev_name,
                         "threads": args.threads, "cortexalign_s": t_o, "numpy_s": t_n,
                         "speedup": t_n / t_o, "abs_diff": float(abs(v_o - v_n))})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
