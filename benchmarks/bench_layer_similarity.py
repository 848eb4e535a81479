"""Layer similarity: all pairs at once (``layer_similarity``) vs a Python double loop of ``cka()``.

    python benchmarks/bench_layer_similarity.py            # 12 x 12 layers, 1,000 stimuli
    python benchmarks/bench_layer_similarity.py --quick    # 6 x 6 layers, 300 stimuli, seconds

The loop is what a user writes without the function: ``cka(A[i], B[j], kind)`` for every pair
(each call validates and converts both feature sets again), or ``compare_rdms(compute_rdm(A[i]),
compute_rdm(B[j]))`` for RSA. The widths alternate between narrower and wider than the stimulus
count (CNN-like 64 ... 2048), so both of the linear engines run. The largest entry-wise
difference between the two is printed as a check. Each timing is the best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _timing import limit_blas_threads, timed  # noqa: E402  (sibling module: run as a script)

CKA_KIND = {"cka_linear": "linear", "cka_linear_debiased": "linear_debiased", "cka_rbf": "rbf"}


def _widths(n: int, rng: np.random.Generator) -> list[int]:
    return [int(w) for w in rng.choice([64, 128, 256, 512, 1024, 2048], size=n)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=12, help="layers per network")
    p.add_argument("--stimuli", type=int, default=1000)
    p.add_argument("--metrics", nargs="+", default=[*CKA_KIND, "rsa"])
    p.add_argument("--quick", action="store_true", help="6 x 6 layers, 300 stimuli")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.layers, args.stimuli = 6, 300
    limit_blas_threads(args.threads)

    import torch

    from cortexalign.metrics import cka, compare_rdms, compute_rdm, layer_similarity

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    s = args.stimuli
    feats_a = {f"a{i}": rng.normal(size=(s, d)) for i, d in enumerate(_widths(args.layers, rng))}
    feats_b = {f"b{i}": rng.normal(size=(s, d)) for i, d in enumerate(_widths(args.layers, rng))}
    dev_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"{args.layers} x {args.layers} layers, {s} stimuli, widths A "
          f"{[x.shape[1] for x in feats_a.values()]}, B {[x.shape[1] for x in feats_b.values()]}; "
          f"{args.threads} threads, device {args.device} ({dev_name}), torch {torch.__version__}")

    def loop(metric: str) -> np.ndarray:
        if metric == "rsa":
            rdm_b = [compute_rdm(y, device=args.device) for y in feats_b.values()]
            return np.array([[compare_rdms(compute_rdm(x, device=args.device), r,
                                           device=args.device)[0, 0] for r in rdm_b]
                             for x in feats_a.values()])
        return np.array([[cka(x, y, CKA_KIND[metric], device=args.device)
                          for y in feats_b.values()] for x in feats_a.values()])

    rows = []
    print(f"{'metric':>20} {'all pairs s':>12} {'loop s':>9} {'speed-up':>9} {'|diff|':>9}")
    for metric in args.metrics:
        fast, t_fast = timed(lambda m=metric: layer_similarity(feats_a, feats_b, m,
                                                                device=args.device).values,
                             args.repeats)
        ref, t_loop = timed(lambda m=metric: loop(m), args.repeats)
        diff = float(np.nanmax(np.abs(fast - ref)))
        rows.append({"metric": metric, "layers": args.layers, "stimuli": s,
                     "all_pairs_s": t_fast, "loop_s": t_loop, "speedup": t_loop / t_fast,
                     "max_abs_diff": diff, "threads": args.threads, "device": args.device})
        print(f"{metric:>20} {t_fast:12.3f} {t_loop:9.3f} {t_loop / t_fast:8.1f}x {diff:9.1e}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
