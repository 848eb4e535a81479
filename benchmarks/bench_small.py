"""Small data on the CPU, side by side with the peers, on a quiet machine and a busy one.

    python benchmarks/bench_small.py                    # every ratio: 92, 118, 300, 1,000 stimuli, quiet then busy
    python benchmarks/bench_small.py --modes quiet      # quiet only (run it on an idle machine)
    python benchmarks/bench_small.py --modes busy --sizes 92 300 --repeats 5
    python benchmarks/bench_small.py --json small.json  # the rows, for BENCHMARKS.md

The everyday case in this field is small: 92 objects (Kriegeskorte et al.), 118 Allen natural
scenes, 1,000 NSD shared images. Each size runs these tasks, ours and the peer in the same
process, interleaved repeat by repeat (so a load spike hits both), best of ``--repeats``, and
prints the peer's time over ours (``> 1``: we are faster):

- ``rdm_thingsvision``: correlation RDM of (s, 1,000) features; peer THINGSvision 2.7.3's
  ``compute_rdm`` (its rsa/helpers.py from the PyPI wheel: bench_thingsvision_rdm.py; skipped
  when the wheel cannot be downloaded).
- ``rdm+spearman``: correlation RDM of (s, 1,000) features and its Spearman correlation with a
  target RDM; peer rsatoolbox (``calc_rdm`` + ``compare(method="spearman")``).
- ``cka_linear`` / ``cka_debiased`` / ``cka_rbf``: CKA of (s, 1,000) and (s, 200); peer the
  published formulas in plain NumPy (``bench_cka.numpy_cka``).
- ``ridge``: per-target penalties over 11 alphas, 5 inner folds, (s, 1,000) -> (s, 200), fit and
  predict; peer himalaya on its numpy backend, same outer folds, with the estimator himalaya
  recommends for the shape (``KernelRidgeCV(kernel="linear")`` when stimuli < features, else
  ``RidgeCV``; the inner splits differ, so ``1-r`` of the held-out predictions is printed).
- ``rsa_bootstrap``: ``score("rsa", ...)`` of a model against 8 subject RDMs with 1,000 bootstrap
  resamples of the stimuli; peer rsatoolbox's ``eval_bootstrap_pattern`` of the same fixed model
  (timed at 100 resamples, 20 from 1,000 stimuli, and scaled to 1,000: its cost is linear in
  N). Different resampling schemes (ours leaves out the pairs of copies), same work. Ours is timed
  cold: what a run keeps between its jobs (``stats._memo``) is cleared before each repeat.

Modes (``--modes``):

- ``quiet``: nothing else is started. The figure means "quiet" only when the machine is idle:
  the load average at the start is printed with each mode; on a shared machine, label it.
- ``busy``: ``--busy`` background processes (default 2, one BLAS thread each, spinning on matrix
  products) run for the duration, as on a laptop or a shared node with other work.

Both sides get the same BLAS thread count (``--threads``, default the core count); ours then
picks its own thread count per call (cortexalign.compute). ``--overhead`` (on by default) also
prints the per-call cost on tiny inputs (8 stimuli x 4 features, best of many calls): the fixed
cost of each call, what decides the smallest sizes. The end prints one compact table of the ratios
(tasks x sizes, one block per mode). The checks that both sides compute the same numbers are in
the tests; here the agreement of each pair is printed once (max |difference|).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _timing import limit_blas_threads  # sibling module: run as a script

#: rsatoolbox's bootstrap is timed at this many resamples and scaled to 1,000 (linear in N).
PEER_BOOTSTRAP = 100


def peer_bootstrap(s: int) -> int:
    """Resamples rsatoolbox's bootstrap is timed at (its cost is linear in them): 100, and 20
    from 1,000 stimuli (each of its resamples then takes seconds)."""
    return PEER_BOOTSTRAP if s < 1000 else 20
BUSY_LOOP = ("import numpy as np\n"
             "a = np.random.default_rng(0).standard_normal((300, 300))\n"
             "while True:\n    a = np.tanh(a @ a)\n")


def start_busy(n: int) -> list[subprocess.Popen]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], env=env) for _ in range(n)]
    time.sleep(2.0)  # let them reach the loop
    return procs


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Best wall time of each function, the functions interleaved within every repeat."""
    for f in fns.values():  # warm-up
        f()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def _thingsvision():
    """THINGSvision's ``compute_rdm`` (None when its wheel cannot be had: offline)."""
    from pathlib import Path

    from bench_thingsvision_rdm import thingsvision_rdm

    try:
        return thingsvision_rdm(Path.home() / ".cache" / "cortexalign-bench")
    except Exception as err:  # noqa: BLE001 - a benchmark without the wheel still runs
        print(f"(THINGSvision's RDM skipped: {type(err).__name__}: {err})")
        return None


def tasks(s: int, rng, np, tv_rdm=None, only=None):
    import rsatoolbox
    import torch
    from bench_cka import numpy_cka
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.ridge import RidgeCV as HRidgeCV
    from sklearn.model_selection import KFold

    import cortexalign as ca
    from cortexalign.metrics import cka, compare_rdms, compute_rdm
    from cortexalign.metrics._encoding import cross_validated_predictions
    from cortexalign.stats import _memo

    x = rng.standard_normal((s, 1000))
    y = rng.standard_normal((s, 200))
    tgt = compute_rdm(rng.standard_normal((s, 50)))
    tgt_rt = rsatoolbox.rdm.RDMs(tgt[np.triu_indices(s, 1)][None], dissimilarity_measure="corr")

    def ours_rdm():
        return float(np.asarray(compare_rdms(compute_rdm(x, return_tensor=True), tgt, "spearman")).ravel()[0])

    def peer_rdm():
        rdm = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method="correlation")
        return float(rsatoolbox.rdm.compare(rdm, tgt_rt, method="spearman")[0, 0])

    if tv_rdm is not None:
        yield ("rdm_thingsvision", lambda: compute_rdm(x, "correlation"),
               lambda: tv_rdm(x, "correlation"))
    yield "rdm+spearman", ours_rdm, peer_rdm
    for kind, name in (("linear", "cka_linear"), ("linear_debiased", "cka_debiased"),
                       ("rbf", "cka_rbf")):
        yield (name, lambda kind=kind: float(cka(x, y, kind=kind)),
               lambda kind=kind: float(numpy_cka(x, y, kind)))

    alphas = np.logspace(-2, 8, 11)
    folds = list(KFold(5, shuffle=True, random_state=0).split(x))

    def ours_ridge():
        return cross_validated_predictions(x, y, "ridge", device="cpu", seed=0, alphas=alphas,
                                           n_folds=5, inner_folds=5)

    def peer_ridge():
        set_backend("numpy", on_error="raise")
        pred = np.zeros_like(y)
        for tr, te in folds:  # the estimator himalaya itself recommends for the shape
            m = (KernelRidgeCV(kernel="linear", alphas=alphas, cv=KFold(5)) if len(tr) < x.shape[1]
                 else HRidgeCV(alphas=alphas, cv=KFold(5), fit_intercept=True))
            pred[te] = m.fit(x[tr] - x[tr].mean(0), y[tr] - y[tr].mean(0)).predict(
                x[te] - x[tr].mean(0)) + y[tr].mean(0)
        return pred

    yield "ridge", ours_ridge, peer_ridge

    subj = np.stack([compute_rdm(x[:, :40] + 2.0 * rng.standard_normal((s, 40)))
                     for _ in range(8)])
    target = ca.RDMSet(subj, [f"s{i}" for i in range(s)],
                       descriptors={"subject": [f"sub{i // 2}" for i in range(8)]})
    data_rt = rsatoolbox.rdm.RDMs(subj[:, *np.triu_indices(s, 1)],
                                  dissimilarity_measure="corr",
                                  pattern_descriptors={"index": list(range(s))})
    model_rt = rsatoolbox.model.ModelFixed("m", compute_rdm(x)[np.triu_indices(s, 1)])

    def ours_boot():  # cold: nothing kept from the previous repeat (stats._memo)
        _memo.clear()
        return ca.score("rsa", x, target, n_bootstrap=1000, seed=0).value

    def peer_boot():  # 100 resamples, timed x10 below: its cost is linear in N
        evals = rsatoolbox.inference.eval_bootstrap_pattern(model_rt, data_rt, method="spearman",
                                                            N=peer_bootstrap(s))
        return float(np.nanmean(evals.evaluations))

    yield "rsa_bootstrap", ours_boot, peer_boot
    del torch


def run(sizes, repeats, np, tv_rdm=None, only=None) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for s in sizes:
        for name, ours, peer in tasks(s, rng, np, tv_rdm):
            if only and name not in only:
                continue
            reps = max(1, repeats // 3) if name in ("rsa_bootstrap", "ridge") else repeats
            t = interleaved({"ours": ours, "peer": peer}, reps)
            if name == "rsa_bootstrap":
                t["peer"] *= 1000 / peer_bootstrap(s)
            a, b = ours(), peer()
            if name == "rsa_bootstrap":
                agree = float("nan")
            elif name == "ridge":  # inner splits differ: how alike the held-out predictions are
                agree = 1.0 - float(np.corrcoef(a[0].ravel(), b.ravel())[0, 1])
            else:
                agree = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            rows.append({"stimuli": s, "task": name, "ours_s": t["ours"], "peer_s": t["peer"],
                         "ratio": t["peer"] / t["ours"], "disagreement": agree})
            print(f"{s:6d}  {name:14s} ours {t['ours'] * 1e3:9.2f} ms   peer "
                  f"{t['peer'] * 1e3:9.2f} ms   peer/ours {t['peer'] / t['ours']:7.2f}x"
                  + ("" if agree != agree else f"   {'1-r' if name == 'ridge' else '|diff|'} {agree:.1e}"),
                  flush=True)
    return rows


def overhead(np, tv_rdm=None, calls: int = 300, repeats: int = 7) -> list[dict]:
    """Per-call cost on tiny inputs (8 stimuli x 4 features): the fixed cost of each call."""
    rng = np.random.default_rng(1)
    rows = []
    for name, ours, peer in tasks(8, rng, np, tv_rdm):
        if name in ("ridge", "rsa_bootstrap"):
            continue
        best = dict.fromkeys(("ours", "peer"), float("inf"))
        for f in (ours, peer):
            f()
        for _ in range(repeats):
            for k, f in (("ours", ours), ("peer", peer)):
                t0 = time.perf_counter()
                for _ in range(calls):
                    f()
                best[k] = min(best[k], (time.perf_counter() - t0) / calls)
        rows.append({"task": name, "ours_us": best["ours"] * 1e6, "peer_us": best["peer"] * 1e6})
        print(f"  per call, 8 x 4 inputs  {name:16s} ours {best['ours'] * 1e6:8.1f} us   peer "
              f"{best['peer'] * 1e6:8.1f} us", flush=True)
    return rows


def ratio_table(rows: list[dict]) -> str:
    """Tasks x sizes of peer/ours ratios, one block per mode (``> 1``: we are faster)."""
    lines = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode]
        sizes = sorted({r["stimuli"] for r in mine})
        lines.append(f"{mode} (load {mine[0].get('load', float('nan')):.1f} at start)".ljust(20)
                     + "".join(f"{s:>9d}" for s in sizes))
        for task in dict.fromkeys(r["task"] for r in mine):
            cells = {r["stimuli"]: r["ratio"] for r in mine if r["task"] == task}
            lines.append(f"  {task:18s}" + "".join(f"{cells[s]:8.2f}x" if s in cells else
                                                    f"{'-':>9s}" for s in sizes))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[92, 118, 300, 1000])
    p.add_argument("--modes", nargs="+", default=["quiet", "busy"], choices=["quiet", "busy"],
                   help="quiet: nothing else started; busy: --busy spinning processes beside")
    p.add_argument("--busy", type=int, default=2, help="background processes in busy mode")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="BLAS threads")
    p.add_argument("--repeats", type=int, default=7, help="best of this many (a third for "
                   "ridge and the bootstrap)")
    p.add_argument("--tasks", nargs="+", help="only these tasks (names as printed)")
    p.add_argument("--no-overhead", dest="overhead", action="store_false",
                   help="skip the per-call cost on tiny inputs")
    p.add_argument("--no-thingsvision", dest="thingsvision", action="store_false",
                   help="skip THINGSvision's RDM (it needs its wheel from PyPI once)")
    p.add_argument("--quick", action="store_true", help="sizes 92 and 300, 3 repeats")
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = [92, 300], 3
    limit_blas_threads(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")  # rsatoolbox's bootstrap progress bar
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore", module="himalaya")
    tv_rdm = _thingsvision() if args.thingsvision else None

    out, tiny = [], {}
    for mode in args.modes:
        load = os.getloadavg()[0]
        print(f"== {mode} ({args.busy if mode == 'busy' else 0} busy background processes, "
              f"load {load:.1f} at start)", flush=True)
        procs = start_busy(args.busy) if mode == "busy" else []
        try:
            if args.overhead:
                tiny[mode] = overhead(np, tv_rdm)
            for row in run(args.sizes, args.repeats, np, tv_rdm, args.tasks):
                out.append({"mode": mode, "load": load, **row})
        finally:
            stop_busy(procs)
    print("\npeer time / our time (> 1: cortexalign is faster)")
    print(ratio_table(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": out, "overhead": tiny, "cpu_count": os.cpu_count()}, f, indent=1)


if __name__ == "__main__":
    main()
