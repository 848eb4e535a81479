"""RDM + comparison: cortexalign vs rsatoolbox on the same random data.

    python benchmarks/bench_rsa.py                       # 92, 500, 1000, 2500 stimuli x 10,000 features
    python benchmarks/bench_rsa.py --quick               # small sizes, seconds
    python benchmarks/bench_rsa.py --sizes 92 500 --features 2000 --threads 2 --device cpu
    python benchmarks/bench_rsa.py --device cuda --threads 16 --sizes 1000 2500 5000 \
        --peer-max 2500 --json rsa.json   # GPU; rsatoolbox above 2,500 stimuli extrapolated

Times one model RDM (``correlation`` by default) and its comparison (``spearman`` by default) with
a fixed target RDM, as an RSA scoring step does: numpy features in, the model RDM kept on the
device (``compute_rdm(..., return_tensor=True)`` into ``compare_rdms``), the target RDM put on the
device once (it is shared by every model scored against it). The old path, the RDM copied to
numpy and back, is timed too (``numpy_roundtrip_s``); checks both libraries give the same RDM and the
same comparison; prints a table with the speed-up. Each timing is the best of ``--repeats`` runs.
Above ``--peer-max`` stimuli rsatoolbox is not run: its time is extrapolated from the largest
measured size by the O(s^2 d) cost of the RDM (marked ``extrapolated``), and no agreement is checked.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _timing import best_of, limit_blas_threads  # noqa: E402  (sibling module: run as a script)

#: our RDM_COMPARISONS name -> rsatoolbox's ``rdm.compare`` method
RSATOOLBOX_NAMES = {"spearman": "spearman", "pearson": "corr", "cosine": "cosine",
                    "rho_a": "rho-a", "kendall_tau_a": "tau-a", "cosine_cov": "cosine_cov",
                    "corr_cov": "corr_cov"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[92, 500, 1000, 2500])
    p.add_argument("--features", type=int, default=10_000)
    p.add_argument("--quick", action="store_true", help="sizes 92 and 300, 1,000 features")
    p.add_argument("--rdm-method", default="correlation", choices=["correlation", "euclidean"])
    p.add_argument("--compare", default="spearman", choices=sorted(RSATOOLBOX_NAMES),
                   help="RDM comparison (rsatoolbox's name in brackets in the table's title)")
    p.add_argument("--threads", type=int, default=2, help="torch and BLAS threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--peer-repeats", type=int, default=None, help="rsatoolbox repeats (default: --repeats)")
    p.add_argument("--peer-max", type=int, default=None, help="largest size rsatoolbox runs at")
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.features = [92, 300], 1_000
    limit_blas_threads(args.threads)  # before numpy/torch load their BLAS

    import rsatoolbox
    import torch

    from cortexalign.metrics import compare_rdms, compute_rdm

    torch.set_num_threads(args.threads)
    rsa_compare = RSATOOLBOX_NAMES[args.compare]
    rng = np.random.default_rng(0)
    dev_name = (torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu")
    print(f"{args.rdm_method} RDM + {args.compare} ({rsa_compare}) comparison, {args.features} features, "
          f"{args.threads} threads, device {args.device} ({dev_name}), torch {torch.__version__}")
    print(f"{'stimuli':>8} {'cortexalign s':>14} {'rsatoolbox s':>13} {'speed-up':>9} "
          f"{'max |dRDM|':>11} {'|d compare|':>12}")
    rows, last = [], None
    for s in args.sizes:
        x = rng.normal(size=(s, args.features)) + rng.normal(size=(s, 1))
        target = compute_rdm(rng.normal(size=(s, 50)), "euclidean", device="cpu")
        target_rsa = rsatoolbox.rdm.RDMs(target[None])

        # the target (neural) RDM is fixed across the models of a scoring run: on the device once
        target_dev = torch.as_tensor(target, device=args.device)

        def ours(x=x, target_dev=target_dev):  # numpy features in; the RDM stays on the device
            rdm = compute_rdm(x, args.rdm_method, device=args.device, return_tensor=True)
            sim = compare_rdms(rdm, target_dev, args.compare, return_tensor=True)
            return rdm, float(sim[0, 0])

        def ours_numpy(x=x, target=target):  # the round trip of before: numpy RDM in and out
            rdm = compute_rdm(x, args.rdm_method, device=args.device)
            return rdm, compare_rdms(rdm, target, args.compare, device=args.device)[0, 0]

        def theirs(x=x, target_rsa=target_rsa):
            rdm = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=args.rdm_method)
            return rdm, rsatoolbox.rdm.compare(rdm, target_rsa, rsa_compare)[0, 0]

        ours()  # warm-up (CUDA context, kernel selection); not timed
        t_ours, (rdm_o, c_o) = best_of(ours, args.repeats)
        rdm_o = rdm_o.cpu().numpy()
        t_np, (_, c_np) = best_of(ours_numpy, args.repeats)
        assert abs(c_np - c_o) <= 1e-12, (c_np, c_o)
        row = {"stimuli": s, "features": args.features, "device": args.device, "gpu": dev_name,
               "threads": args.threads, "cortexalign_s": t_ours, "numpy_roundtrip_s": t_np,
               "torch": torch.__version__}
        print(f"{'':>8} numpy RDM round trip (compute_rdm -> numpy -> compare_rdms): {t_np:.4f} s",
              flush=True)
        if args.device.startswith("cuda"):  # the same maths on device-resident tensors: no host copies
            from cortexalign.rdm import compare_vectors, rdm_tensor, upper_tri

            x_t = torch.as_tensor(x, device=args.device)
            tv = upper_tri(torch.as_tensor(target, device=args.device))[None]

            def resident(x_t=x_t, tv=tv):
                r = rdm_tensor(x_t, args.rdm_method)
                c = compare_vectors(upper_tri(r)[None], tv, args.compare)
                torch.cuda.synchronize()
                return c

            resident()
            t_res, c_res = best_of(resident, args.repeats)
            row.update(device_resident_s=t_res,
                       device_resident_compare_diff=float(abs(float(c_res[0, 0]) - c_o)))
            print(f"{'':>8} on-device tensors (no host copies): {t_res:.4f} s", flush=True)
        if args.peer_max is None or s <= args.peer_max:
            t_rsa, (rdm_r, c_r) = best_of(theirs, args.peer_repeats or args.repeats)
            d_rdm = float(np.abs(rdm_o - rdm_r.get_matrices()[0]).max())
            row.update(rsatoolbox_s=t_rsa, extrapolated=False, max_abs_rdm_diff=d_rdm,
                       abs_compare_diff=float(abs(c_o - c_r)))
            last = (s, t_rsa)
            tail = f"{d_rdm:>11.1e} {abs(c_o - c_r):>12.1e}"
        elif last is not None:
            t_rsa = last[1] * (s / last[0]) ** 2  # O(s^2 d) at fixed d
            row.update(rsatoolbox_s=t_rsa, extrapolated=True)
            tail = f"{'(rsatoolbox extrapolated from ' + str(last[0]) + ')':>24}"
        else:  # no smaller size measured to extrapolate from
            row.update(rsatoolbox_s=None, extrapolated=None)
            print(f"{s:>8} {t_ours:>14.4f} {'-':>13} {'-':>9} (rsatoolbox not run)", flush=True)
            rows.append(row)
            continue
        row["speedup"] = t_rsa / t_ours
        rows.append(row)
        print(f"{s:>8} {t_ours:>14.4f} {t_rsa:>13.3f} {t_rsa / t_ours:>8.1f}x {tail}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
