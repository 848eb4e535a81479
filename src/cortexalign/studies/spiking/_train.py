"""Train every model of the plan with ``train_snn`` and test it on the held-out images.

Each model trains in ``OUT/runs/<name>`` (resumable: a rerun continues from the last complete
checkpoint, and a finished run is not trained again) and is recorded in ``OUT/results.duckdb``
by ``train_snn`` itself (table ``training``: the curves, then firing rates and energy on
``plan.n_measure`` held-out images). Its held-out accuracy is recomputed from
the final checkpoint on every test image, with a one-sided exact binomial test against chance,
taken as the share of the most frequent test class (1 / K for balanced classes): the p-value
that a model guessing without looking at the images would do this well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.stats
import torch

from cortexalign.studies.spiking._data import TaskData
from cortexalign.studies.spiking._plan import StudyPlan

__all__ = ["Trained", "train_models", "load_trained", "run_dir"]


@dataclass
class Trained:
    """One trained model: its final checkpoint, curve and held-out accuracy."""

    name: str
    checkpoint: Path
    params: int
    epochs: list[dict] = field(default_factory=list)
    n_correct: int = 0
    n_test: int = 0
    chance: float = 0.0
    p_value: float = 1.0
    stop_reason: str = "finished"
    job_key: str = ""

    @property
    def accuracy(self) -> float:
        """Held-out accuracy (correct / test images)."""
        return self.n_correct / self.n_test if self.n_test else float("nan")

    @property
    def train_seconds(self) -> float:
        """Wall seconds of training, summed over epochs (resumed runs included)."""
        return float(sum(e.get("seconds", 0.0) for e in self.epochs))


def run_dir(out: Path, name: str) -> Path:
    """``OUT/runs/<name>`` (``timm:`` and other separators made file-name safe)."""
    return out / "runs" / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def load_trained(plan: StudyPlan, name: str, checkpoint: Path, num_classes: int,
                 device: torch.device) -> torch.nn.Module:
    """The model ``name`` with the weights of ``checkpoint``, in eval mode on ``device``."""
    from cortexalign.spiking import load_weights
    from cortexalign.spiking.train import build_classifier

    model = build_classifier(name, num_classes, 3, plan.options(name, num_classes))
    load_weights(model, checkpoint)
    return model.to(device).eval()


@torch.no_grad()
def _predict(model: torch.nn.Module, x_nhwc: np.ndarray, device: torch.device,
             batch: int = 200) -> np.ndarray:
    from cortexalign.compute import compute_threads
    from cortexalign.spiking import step_work, to_input

    out = []
    with compute_threads(step_work(model, batch, x_nhwc.shape[1:3]) / 3):
        for i in range(0, len(x_nhwc), batch):
            xb = to_input(torch.from_numpy(x_nhwc[i:i + batch]).to(device))
            out.append(model(xb).argmax(1).cpu().numpy())
    return np.concatenate(out)


def train_models(plan: StudyPlan, task: TaskData, out: Path, device: str = "auto",
                 progress: bool = True) -> list[Trained]:
    """Train (or resume) every model of ``plan`` on ``task``; test each on the held-out images."""
    from cortexalign.device import resolve_device
    from cortexalign.errors import InputError
    from cortexalign.spiking import TrainConfig, load_image_data, train_snn

    dev = resolve_device(device)
    data = load_image_data(task.path)
    counts = np.bincount(data.test_y, minlength=task.num_classes)
    chance = float(counts.max() / counts.sum())
    results = []
    for name in plan.names():
        options = plan.options(name, task.num_classes)
        cfg = TrainConfig(data=task.path, checkpoint_dir=run_dir(out, name), model=name,
                          model_options=options, epochs=plan.epochs,
                          batch_size=plan.batch_size, lr=plan.lr,
                          weight_decay=plan.weight_decay, augment=plan.augment, amp=plan.amp,
                          cuda_graph=plan.cuda_graph and dev.type == "cuda", seed=plan.seed,
                          device=str(dev), progress=progress, results_dir=out,
                          energy_images=plan.n_measure)
        result = train_snn(cfg)
        if result.last_checkpoint is None or result.stopped_at_step is not None:
            raise InputError("lr", f"a training run of {name} whose loss stays finite",
                             f"a run that stopped: {result.stop_reason}",
                             f"lower the plan's lr; {cfg.checkpoint_dir} keeps the last good "
                             "checkpoint")
        model = load_trained(plan, name, result.last_checkpoint, task.num_classes, dev)
        pred = _predict(model, data.test_x, dev)
        n_correct = int((pred == data.test_y).sum())
        p = scipy.stats.binomtest(n_correct, len(pred), chance, alternative="greater").pvalue
        results.append(Trained(name, result.last_checkpoint,
                               sum(t.numel() for t in model.parameters()), list(result.epochs),
                               n_correct, len(pred), chance, float(p), result.stop_reason,
                               result.job_key))
    return results
