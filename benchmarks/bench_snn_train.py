"""Short training runs of the spiking transformers on the CIFAR-10 subset (issue 6's evidence).

For each model: a 20-step probe measures the time per step, then a fresh run of as many steps as
fit in ``--budget`` seconds trains it with ``cortexalign.spiking.train_snn`` (AdamW, cosine decay,
augmentation, bf16 autocast on CUDA). Reported per model: the loss of the first step and the mean
loss of the last 20 steps, train and test accuracy (chance is 1 / classes), seconds per step.

    python benchmarks/bench_snn_train.py --data ../shared/data/cifar10_subset/cifar10_subset.npz \\
        --models hst_4_384 spiliformer_4_384 tdformer_4_384 --budget 100 --json snn.json
    python benchmarks/bench_snn_train.py --quick --data ...   # tiny models, a few CPU steps
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import traceback
from pathlib import Path

import torch

from cortexalign.spiking.train import TrainConfig, train_snn


def train_one(model: str, data: Path, budget: float, batch: int, device: str,
              max_train: int | None, probe_steps: int) -> dict:
    base = dict(data=data, model=model, batch_size=batch, device=device, progress=False,
                max_train_samples=max_train, resume=False, keep_last=1, epochs=1000)
    with tempfile.TemporaryDirectory() as tmp:
        probe = train_snn(TrainConfig(checkpoint_dir=Path(tmp) / "probe", max_steps=probe_steps,
                                      **base))
        per_step = probe.epochs[-1]["seconds_per_step"]
        steps = max(probe_steps, int(budget / per_step))
        t0 = time.perf_counter()
        res = train_snn(TrainConfig(checkpoint_dir=Path(tmp) / "run", max_steps=steps, **base))
        wall = time.perf_counter() - t0
    last = res.epochs[-1]
    return {"model": model, "steps": res.steps, "batch": batch, "epochs_run": len(res.epochs),
            "first_loss": res.first_loss, "final_loss_last20": res.final_loss,
            "train_acc_last_epoch": last["train_acc"], "test_acc": last["test_acc"],
            "test_acc_per_epoch": [e["test_acc"] for e in res.epochs],
            "seconds_per_step": sum(e["seconds"] for e in res.epochs) / res.steps,
            "probe_seconds_per_step": per_step, "wall_s": wall, "stop_reason": res.stop_reason}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="npz (train/test images and labels)")
    p.add_argument("--models", nargs="+", default=["hst_4_384", "spiliformer_4_384", "tdformer_4_384"])
    p.add_argument("--budget", type=float, default=100.0, help="training seconds per model")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--max-train", type=int, default=None, help="use the first n training images")
    p.add_argument("--quick", action="store_true", help="tiny models, 256 images, 3 s each, CPU")
    p.add_argument("--json", help="write the rows to this file")
    a = p.parse_args()
    probe_steps = 20
    if a.quick:
        a.models = [m.rsplit("_", 2)[0] + "_tiny" for m in a.models]
        a.budget, a.batch, a.device, a.max_train, probe_steps = 3.0, 16, "cpu", 256, 2
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() and a.device != "cpu" else None
    print(f"torch {torch.__version__}, gpu {gpu}, budget {a.budget} s per model", flush=True)
    rows = []
    for model in a.models:
        try:
            row = train_one(model, a.data, a.budget, a.batch, a.device, a.max_train, probe_steps)
        except Exception as exc:  # one model's failure must not hide the others' evidence
            traceback.print_exc()
            row = {"model": model, "error": f"{type(exc).__name__}: {exc}"}
        row.update(gpu=gpu, torch=torch.__version__)
        rows.append(row)
        if "error" not in row:
            print(f"{model:20s} steps {row['steps']:5d}  loss {row['first_loss']:.3f} -> "
                  f"{row['final_loss_last20']:.3f}  test acc {row['test_acc']:.3f}  "
                  f"{row['seconds_per_step'] * 1e3:.1f} ms/step", flush=True)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(rows, f, indent=1)
    if any("error" in r or not math.isfinite(r.get("final_loss_last20") or math.nan) for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
