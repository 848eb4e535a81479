"""Bookkeeping at zoo scale: the runner's cost per job when the jobs themselves are trivial.

The grid: ``--models`` copies of a trivial registered model (``bench_trivial``: 2x2 average pool
then ``--layers`` tiny linear layers, 12 features each; one copy per seed, so every copy has its
own job keys) x ``--targets`` small RDM files (92 stimuli, written for the run) x 4 RSA variants
(Pearson and Spearman comparison of correlation and euclidean RDMs), on the 92 images of
Kriegeskorte et al. (2008), with no bootstrap. What is left is the orchestration: planning and
job keys, the skip check, one store write per job, progress, extraction through the feature cache
(one entry per layer) and the report at the end.

Two passes into one results directory, in this process:

- ``first``: every job computed and written; ``per_job_ms`` = wall time / jobs. The scoring
  itself (one RSA per job on 92 x 12 features) is timed apart on the same features
  (``score_ms``) so the orchestration share is ``per_job_ms - score_ms``.
- ``rerun``: the same config again: every job is found finished and skipped.

    python benchmarks/bench_bookkeeping.py                       # 2,000 jobs (a minute)
    python benchmarks/bench_bookkeeping.py --models 100 --layers 10 --targets 25   # 100,000
    python benchmarks/bench_bookkeeping.py --profile 30          # cProfile: top 30 functions

Prints one JSON line per pass (and the load average of the machine when it ran).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

METRICS = [{"name": "rsa", "options": {"compare": c, "rdm_method": m}}
           for m in ("correlation", "euclidean") for c in ("pearson", "spearman")]
N_FEATURES = 12


def register_trivial_model() -> None:
    """``bench_trivial``: kwargs ``n_layers``; the seed (``untrained: true, seed: k``) makes
    distinct copies."""
    from cortexalign.models import MODELS, ModelAdapter
    from cortexalign.models._preprocess import Preprocess

    if "bench_trivial" in MODELS:
        return

    def build(spec, n_layers: int = 10) -> ModelAdapter:
        torch.manual_seed(spec.seed)
        module = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, N_FEATURES),
                               *[nn.Linear(N_FEATURES, N_FEATURES) for _ in range(n_layers - 1)])
        paths = {f"l{i}": str(i + 2) for i in range(n_layers)}
        return ModelAdapter(spec.name, f"bench_trivial-{n_layers}{spec.variant()}", module,
                            Preprocess(size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3),
                            spec.device, layer_paths=paths)

    MODELS.add("bench_trivial", build, description="trivial model for bench_bookkeeping",
               layers="l0..l{n_layers-1}", weights="none (seeded)",
               tiny={"n_layers": 2})


def write_targets(root: Path, n: int) -> list[str]:
    """``n`` RDM files over the 92 stimuli (random, seeded)."""
    from cortexalign.stimuli import load_stimuli

    ids = np.array(load_stimuli("kriegeskorte92").ids)
    rng = np.random.default_rng(0)
    paths = []
    for k in range(n):
        x = rng.standard_normal((len(ids), 6))
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        path = root / f"target{k:03d}.npz"
        np.savez(path, rdms=d, stimulus_ids=ids)
        paths.append(str(path))
    return paths


def config(models: int, layers: int, targets: list[str]) -> dict:
    return {"name": "bench-bookkeeping", "stimuli": {"source": "kriegeskorte92"},
            "models": [{"name": "bench_trivial", "untrained": True, "seed": s,
                        "label": f"trivial-{s}",
                        "kwargs": {"n_layers": layers}} for s in range(models)],
            "neural": [{"source": t} for t in targets], "metrics": METRICS,
            "n_bootstrap": 0, "batch_size": 92}


def score_ms(targets: list[str]) -> float:
    """The scoring alone: one job's RSA (every variant once) on 92 x 12 features, in ms."""
    from cortexalign.metrics import score
    from cortexalign.neural import load_neural

    x = np.random.default_rng(1).standard_normal((92, N_FEATURES))
    rdms = load_neural(targets[0])
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 2.0:
        for m in METRICS:
            score("rsa", x, rdms, n_bootstrap=0, **m["options"])
            n += 1
    return 1e3 * (time.perf_counter() - t0) / n


def run_pass(cfg_path: Path, out: Path, label: str, profile: int) -> dict:
    from cortexalign.bench import run_experiment

    prof = cProfile.Profile() if profile else None
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    summary = run_experiment(cfg_path, out, progress=False)
    if prof:
        prof.disable()
    seconds = time.perf_counter() - t0
    if prof:
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(profile)
    return {"pass": label, "jobs": summary.n_jobs, "done": summary.n_done,
            "skipped": summary.n_skipped, "failures": len(summary.failures),
            "seconds": round(seconds, 2),
            "per_job_ms": round(1e3 * seconds / max(1, summary.n_jobs), 3),
            "loadavg_1min": round(max(load0, os.getloadavg()[0]), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=5)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--targets", type=int, default=10)
    ap.add_argument("--profile", type=int, default=0, help="print the top N of a cProfile")
    ap.add_argument("--keep", type=Path, default=None, help="write here instead of a temp dir")
    args = ap.parse_args()
    import yaml

    register_trivial_model()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        targets = write_targets(root, args.targets)
        cfg_path = root / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(config(args.models, args.layers, targets)))
        print(json.dumps({"score_ms": round(score_ms(targets), 3),
                          "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}),
              flush=True)
        for label in ("first", "rerun"):
            print(json.dumps(run_pass(cfg_path, root / "out", label, args.profile)), flush=True)


if __name__ == "__main__":
    main()
