"""What one alignment-training step costs on the CPU, part by part, and the objectives vs the metrics.

    python benchmarks/bench_align_step.py                 # the study's CPU configuration
    python benchmarks/bench_align_step.py --repeats 20 --threads 1

Times are CPU seconds of this process (``time.process_time``), median over ``--repeats``, so a
busy shared machine inflates them less than wall time. The step is the study's (``timm:
test_convnext2`` at 32 px, task batch 64, the 69 training stimuli of the human IT RDMs, soft
Spearman RSA on ``stages.2``): task forward + backward, the alignment forward, the objective, the
alignment backward, the optimiser; then each objective forward + backward next to its hard
metric on (69, 384) features.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from cortexalign.align import AlignConfig
    from cortexalign.align.train import _Run
    from cortexalign.metrics import cka_objective, ridge_objective, rsa_objective, score
    from cortexalign.neural import make_responses

    with tempfile.TemporaryDirectory() as tmp:
        run = _Run(AlignConfig(out=tmp, max_task_train=500, max_task_test=100, progress=False,
                               device="cpu", lam=1.0))
        run.module.train()
        x, y, ids = run.batch(0)
        brain = run.brain["train"]

        def task():
            torch.nn.functional.cross_entropy(run.module(x), y).backward()

        def align_fwd():
            return run.adapter.forward_layers(brain, run.layers, grad=True)

        feats = align_fwd()

        def objective():
            return run.loss(feats, ids)

        def align_all():
            run.loss(align_fwd(), ids).backward()

        rows = {"task forward+backward (64 images)": _median(task, args.repeats),
                "alignment forward (69 stimuli)": _median(align_fwd, args.repeats),
                "soft-Spearman RSA objective": _median(objective, args.repeats),
                "alignment forward+objective+backward": _median(align_all, args.repeats),
                "whole step (optimiser included)": _median(lambda: run.step(1), args.repeats)}
    g = torch.Generator().manual_seed(0)
    f = torch.randn(69, 384, dtype=torch.float64, generator=g)
    resp = make_responses(np.random.default_rng(0).standard_normal((69, 50)),
                          [f"s{k}" for k in range(69)])
    from cortexalign.align import BrainTarget, subset_target

    target = BrainTarget.load("kriegeskorte92.human_IT")
    rdms = subset_target(target.data, target.split.train)

    def backward(fn):
        def go():
            a = f.clone().requires_grad_(True)
            fn(a).backward()
        return go

    pairs = {
        "rsa pearson": (backward(lambda a: rsa_objective(a, rdms)),
                        lambda: score("rsa", f.numpy(), rdms, compare="pearson")),
        "rsa soft spearman": (backward(lambda a: rsa_objective(a, rdms, compare="spearman")),
                              lambda: score("rsa", f.numpy(), rdms)),
        "cka linear": (backward(lambda a: cka_objective(a, resp)),
                       lambda: score("cka_linear", f.numpy(), resp)),
        "ridge (5 folds)": (backward(lambda a: ridge_objective(a, resp)),
                            lambda: score("ridge", f.numpy(), resp)),
    }
    print(f"torch threads {torch.get_num_threads()}, median of {args.repeats} (CPU seconds)")
    for name, sec in rows.items():
        print(f"  {name:40s} {sec * 1e3:8.1f} ms")
    print("objective forward+backward vs the hard metric, (69, 384) features:")
    for name, (obj, met) in pairs.items():
        print(f"  {name:20s} objective {_median(obj, args.repeats) * 1e3:8.1f} ms   metric "
              f"{_median(met, args.repeats) * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
