"""The grid of the alignment-training study: lambdas x seeds, one budget, one split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cortexalign.errors import InputError

__all__ = ["StudyPlan", "plan_for", "task_data_path"]

TARGET = "kriegeskorte92.human_IT"
MODEL = "timm:test_convnext2"
LAYER = "stages.2"


@dataclass(frozen=True)
class StudyPlan:
    """Every run of the study shares all of this except lambda and seed."""

    lams: tuple[float, ...]
    seeds: tuple[int, ...]
    steps: int
    batch_size: int
    max_task_train: int | None
    max_task_test: int | None
    eval_every: int
    n_bootstrap: int = 1000
    model: str = MODEL
    layer: str = LAYER
    target: str = TARGET
    objective_options: tuple = (("compare", "spearman"), ("strength", 1.0))

    def run_config(self, lam: float, seed: int, out: Path, task_data: Path | None,
                   device: str, progress: bool) -> dict:
        """The ``AlignConfig`` fields of one run."""
        return dict(out=out, model=self.model, layers=[self.layer], target=self.target,
                    objective="rsa", objective_options=dict(self.objective_options), lam=lam,
                    seed=seed, split_seed=0, heldout_fraction=0.25, steps=self.steps,
                    batch_size=self.batch_size, max_task_train=self.max_task_train,
                    max_task_test=self.max_task_test, eval_every=self.eval_every,
                    task_data=task_data, device=device, progress=progress, lr=2e-3)


def plan_for(subset: str | None) -> StudyPlan:
    """``cpu``: 3 lambdas x 3 seeds x 150 steps (minutes on 2 cores); None: 5 x 5 x 2,000."""
    if subset == "cpu":
        return StudyPlan(lams=(0.0, 1.0, 4.0), seeds=(0, 1, 2), steps=150, batch_size=64,
                         max_task_train=5000, max_task_test=1000, eval_every=50)
    if subset is None:
        return StudyPlan(lams=(0.0, 0.3, 1.0, 3.0, 10.0), seeds=(0, 1, 2, 3, 4), steps=2000,
                         batch_size=128, max_task_train=None, max_task_test=None,
                         eval_every=250)
    raise InputError("subset", "'cpu' or none (the full grid)", repr(subset),
                     "pass --subset cpu for the CPU subset")


def task_data_path(data: Path | None) -> Path | None:
    """The CIFAR-10 subset under ``data`` (a folder holding ``cifar10_subset/cifar10_subset.npz``
    or the npz itself); None: the runs use scikit-learn's bundled digits."""
    if data is None:
        return None
    data = Path(data)
    for cand in (data, data / "cifar10_subset.npz", data / "cifar10_subset" / "cifar10_subset.npz"):
        if cand.is_file() and cand.suffix == ".npz":
            return cand
    if data.is_dir() and (data / "train").is_dir():
        return data  # an image folder in the ImageNet layout
    raise InputError("--data", "the CIFAR-10 subset (a folder holding cifar10_subset/"
                     "cifar10_subset.npz, or the .npz) or an image folder with train/ and val/",
                     repr(str(data)), "pass ../shared/data, or leave --data out to use the "
                     "bundled digits")
