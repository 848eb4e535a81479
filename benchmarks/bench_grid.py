"""Grid wall time: the job graph (extract once per model, cached) vs a naive loop, and Ray scaling.

The grid: models x all their layers x 2 neural datasets x 3 measures, on the 92 images of
Kriegeskorte et al. (2008), on the CPU, without bootstrap (so extraction and scoring dominate).

- Models (full): Gabor V1, EfficientNet-Lite0 pretrained and untrained, ``timm:resnet10t`` and
  ``timm:vit_tiny_patch16_224`` untrained, every layer of each (``layers: all``).
  ``--quick``: Gabor V1 (a small bank on 48-px images) and ``timm:resnet10t`` untrained.
- Datasets: human IT and monkey IT RDMs (``kriegeskorte92.human_IT``, ``.monkey_IT``).
- Measures: RSA with Spearman, Pearson and Kendall's tau-a comparison.

Modes, each in a fresh subprocess (imports and model construction are paid by each):

- ``graph``: ``cortexalign.bench.run_experiment`` with the local executor into an empty results
  directory (cold feature cache): each model is loaded and run once for all its layers; every
  job written to the DuckDB store (one transaction each) and the report written at the end.
- ``naive``: for every (model, dataset, measure): load the model, extract all its layers (no
  cache), score each layer with ``cortexalign.metrics.score``; nothing is written. This is the
  re-extract-per-measure loop the job graph replaces (and it is spared the store and report).
- ``ray-N``: the same run as ``graph`` with ``executor: ray`` on a local Ray started for the run
  with N one-CPU workers (Ray's start-up included; reported separately as ``ray_start_s``).

    python benchmarks/bench_grid.py --quick          # 2 models, a few minutes on 2 cores
    python benchmarks/bench_grid.py                  # 5 models (run where cores are free)
    python benchmarks/bench_grid.py --workers 1 2 4 8

Scores of ``graph`` and every ``ray-N`` are checked equal (the same table); the naive loop's
scores are checked against ``graph`` too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = ["kriegeskorte92.human_IT", "kriegeskorte92.monkey_IT"]
MEASURES = [{"name": "rsa", "options": {"compare": c}}
            for c in ("spearman", "pearson", "kendall_tau_a")]
SMALL_GABOR = {"name": "gabor_v1", "pooling": "grid2",
               "kwargs": {"image_size": 48, "image_deg": None, "frequencies": [0.06, 0.12, 0.25]}}
MODELS_FULL = [
    {"name": "gabor_v1", "pooling": "grid4"},
    {"name": "efficientnet_lite0", "label": "EfficientNet-Lite0"},
    {"name": "efficientnet_lite0", "untrained": True},
    {"name": "timm:resnet10t", "untrained": True},
    {"name": "timm:vit_tiny_patch16_224", "untrained": True},
]
MODELS_QUICK = [SMALL_GABOR, {"name": "timm:resnet10t", "untrained": True}]


def grid_config(quick: bool) -> dict:
    return {"name": "bench-grid", "stimuli": {"source": "kriegeskorte92"},
            "models": MODELS_QUICK if quick else MODELS_FULL,
            "neural": [{"source": t} for t in TARGETS], "metrics": MEASURES,
            "n_bootstrap": 0, "batch_size": 23, "device": "cpu"}


def _scores(out: Path) -> list[tuple]:
    from cortexalign.results import ResultsStore

    f = ResultsStore(out / "results.duckdb", read_only=True).scores_frame()
    f["compare"] = f["extra"].map(lambda e: json.loads(e).get("compare"))
    return sorted(zip(f["model"], f["layer"], f["target"], f["compare"], f["value"], strict=True))


def run_graph(cfg: dict, workdir: Path, workers: int | None) -> dict:
    from cortexalign.bench import load_config
    from cortexalign.bench._run import run_experiment

    if workers is not None:
        cfg = dict(cfg, executor="ray", ray={"num_workers": workers})
    out = workdir / "out"
    t0 = time.perf_counter()
    summary = run_experiment(load_config(cfg), out, progress=False)
    seconds = time.perf_counter() - t0
    assert summary.ok, summary.failures
    return {"seconds": seconds, "jobs": summary.n_done, "scores": _scores(out)}


def run_naive(cfg: dict) -> dict:
    import numpy as np

    from cortexalign.bench._config_load import load_config
    from cortexalign.bench._targets import load_targets
    from cortexalign.features import extract_features
    from cortexalign.metrics import score
    from cortexalign.models import load_model
    from cortexalign.stimuli import load_stimuli

    c = load_config(cfg)
    t0 = time.perf_counter()
    stimuli = load_stimuli(c.stimuli.source)
    rows, n_extractions = [], 0
    for spec in c.models:
        for target in c.neural:
            data = load_targets(target, stimuli)[0].data
            for metric in c.metrics:
                adapter = load_model(spec.name, pretrained=spec.pretrained, untrained=spec.untrained,
                                     seed=spec.seed, device="cpu", **spec.kwargs)
                feats = extract_features(adapter, stimuli, adapter.layers(), pooling=spec.pooling,
                                         batch_size=c.batch_size, cache=None, progress=False)
                n_extractions += 1
                for layer, f in feats.items():
                    x = np.asarray(f.values, dtype=np.float64).reshape(len(f.values), -1)
                    s = score(metric.name, x, data, n_bootstrap=0, seed=c.seed, **metric.options)
                    rows.append((spec.display, layer, target.display, metric.options["compare"],
                                 s.value))
    return {"seconds": time.perf_counter() - t0, "jobs": len(rows), "extractions": n_extractions,
            "scores": sorted(rows)}


def ray_start_seconds(workers: int) -> float:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    seconds = time.perf_counter() - t0
    ray.shutdown()
    return seconds


def child(mode: str, quick: bool) -> dict:
    cfg = grid_config(quick)
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        if mode == "naive":
            return run_naive(cfg)
        if mode == "graph":
            return run_graph(cfg, Path(tmp), None)
        workers = int(mode.split("-")[1])
        result = run_graph(cfg, Path(tmp), workers)
        result["ray_start_s"] = ray_start_seconds(workers)
        return result


def _spawn(mode: str, quick: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", mode] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 small models (minutes on 2 cores)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4],
                   help="Ray worker counts to time")
    p.add_argument("--no-naive", action="store_true", help="skip the naive loop")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one mode in this process
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.quick), default=str))
        return
    print(f"# bench_grid {'--quick' if args.quick else '(full)'}: {os.cpu_count()} CPU cores, "
          f"python {sys.version.split()[0]}")
    modes = ["graph"] + ([] if args.no_naive else ["naive"]) + [f"ray-{n}" for n in args.workers]
    results = {}
    for mode in modes:
        results[mode] = r = _spawn(mode, args.quick)
        extra = f", Ray start-up {r['ray_start_s']:.1f} s" if "ray_start_s" in r else ""
        extra += f", {r['extractions']} extractions" if "extractions" in r else ""
        print(f"{mode:8s} {r['seconds']:8.1f} s  {r['jobs']} scores{extra}", flush=True)
    ref = results["graph"]["scores"]
    for mode, r in results.items():
        if mode.startswith("ray"):
            assert r["scores"] == ref, f"{mode} scores differ from the local executor's"
    if "naive" in results:
        got = {tuple(x[:4]): x[4] for x in results["naive"]["scores"]}
        want = {tuple(x[:4]): x[4] for x in ref}
        assert got.keys() == want.keys(), "naive and graph scored different jobs"
        worst = max(abs(got[k] - want[k]) for k in want)
        print(f"naive / graph wall time: {results['naive']['seconds'] / results['graph']['seconds']:.2f}x"
              f" (largest score difference {worst:.2e})")
    print("ray-N scores identical to graph: yes")


if __name__ == "__main__":
    main()
