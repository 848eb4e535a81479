"""What the spiking study trains and scores: the recipe per subset, and the runner's configs.

``PLANS["cpu"]`` is the recipe that shows every family learning on two CPU cores in minutes
(tiny widths, stem stride 2, T = 4, four CIFAR-10 classes, 150 training and 50 test images per
class, 10 epochs, no augmentation); ``PLANS["full"]`` is QKFormer's CIFAR recipe at HST-4-384 for
a GPU (all classes, augmentation, bf16, CUDA graphs). The ANN control is a timm ViT of about the
spiking models' size, trained by the same recipe (``cortexalign.spiking.train_snn`` with
``model: timm:<arch>``: same data order, optimizer, schedule and epochs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cortexalign.spiking import FAMILIES

__all__ = ["StudyPlan", "PLANS", "CIFAR_MEAN_STD", "model_entries", "scoring_configs"]

CIFAR_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
"""The channel statistics every model of the study is trained and scored with."""


@dataclass(frozen=True)
class StudyPlan:
    """One way to run the study (``PLANS``): the models, the recipe, the data and the scoring.

    ``size``: the ``SNN_MODELS`` size each family is built at (``{family}_{size}``), with
    ``snn_options`` (``HSTConfig`` overrides) on top; ``ann`` / ``ann_options``: the ANN
    control (``timm:<arch>`` and ``timm.create_model`` options). ``classes``: CIFAR-10 class
    names kept (None: every class of the data); ``n_train`` / ``n_test``: images per class
    (None: all). ``n_measure``: held-out images the energy, firing rates and time-step MI are
    measured on.
    """

    size: str
    snn_options: dict[str, Any]
    ann: str
    ann_options: dict[str, Any]
    ann_layers: tuple[str, ...]
    epochs: int
    batch_size: int
    lr: float
    augment: bool
    classes: tuple[str, ...] | None
    n_train: int | None
    n_test: int | None
    families: tuple[str, ...] = FAMILIES
    time_steps: int = 4
    weight_decay: float = 0.06
    amp: bool = True
    cuda_graph: bool = False
    snn_layers: tuple[str, ...] = ("stage1", "stage2", "stage3")
    mi_layer: str = "stage3"
    n_measure: int = 200
    n_bootstrap: int = 0
    untrained_controls: bool = True
    allen_split_by: tuple[str, ...] = ("area", "cre_line")
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def snn_name(self, family: str) -> str:
        """The registry name of ``family`` at this plan's size."""
        return f"{family}_{self.size}"

    def names(self) -> list[str]:
        """Every trained model, spiking families first, then the ANN."""
        return [self.snn_name(f) for f in self.families] + [self.ann]

    def label(self, name: str, trained: bool) -> str:
        """The model's label in the scores: ``hst_tiny (trained)``, ``ANN vit_tiny
        (untrained)``..."""
        short = f"ANN {name.removeprefix('timm:').split('_patch')[0]}" if name == self.ann else name
        return f"{short} ({'trained' if trained else 'untrained'})"

    def options(self, name: str, num_classes: int) -> dict[str, Any]:
        """Constructor options of ``name`` as trained (also what scoring rebuilds it with)."""
        base = self.ann_options if name == self.ann else self.snn_options
        return {**base, "num_classes": num_classes}


PLANS: dict[str, StudyPlan] = {
    "cpu": StudyPlan(
        size="tiny", snn_options={"embed_dim": 32, "depths": [1, 1, 1], "num_heads": 2,
                                  "time_steps": 4, "stem_stride": 2},
        ann="timm:vit_tiny_patch16_224",
        ann_options={"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 3,
                     "num_heads": 2},
        ann_layers=("blocks.0", "blocks.1", "blocks.2"),
        epochs=10, batch_size=32, lr=3e-3, augment=False,
        classes=("airplane", "automobile", "frog", "horse"), n_train=150, n_test=50,
        n_bootstrap=200),
    "full": StudyPlan(
        size="4_384", snn_options={"time_steps": 4},
        ann="timm:vit_tiny_patch16_224",
        ann_options={"img_size": 32, "patch_size": 4},
        ann_layers=("blocks.2", "blocks.5", "blocks.8", "blocks.11"),
        snn_layers=("stage1", "stage2", "stage3.block0", "stage3"),
        epochs=100, batch_size=64, lr=1e-3, augment=True, cuda_graph=True,
        classes=None, n_train=None, n_test=None, n_measure=500, n_bootstrap=1000),
}
"""``cpu``: about 35,000-parameter spiking models (D = 32, 1+1+1 blocks, 2 heads, T = 4, stem
stride 2) and a 42,000-parameter ViT (3 blocks of width 32, patch 4), 4 classes x (150 + 50)
images, 10 epochs of batch 32 at lr 3e-3, 200 bootstrap resamples of the stimuli. ``full``: HST-4-384 (6.7M parameters, T = 4) of each
family and ViT-Tiny at 32 px with patch 4 (5.4M), QKFormer's optimizer (AdamW lr 1e-3, wd 0.06,
batch 64, cosine) with crop-and-flip augmentation, 100 epochs (QKFormer trains 400) on every
image of the data given."""


def model_entries(plan: StudyPlan, checkpoints: dict[str, Path],
                  num_classes: int) -> list[dict[str, Any]]:
    """The runner's model entries: each trained model (its final checkpoint) and, when the plan
    asks, its untrained control (same architecture and seed; spiking controls get batch-norm
    statistics calibrated on the stimuli, which their model id states)."""
    mean, std = CIFAR_MEAN_STD
    entries = []
    for name in plan.names():
        ann = name == plan.ann
        kwargs = plan.options(name, num_classes)
        base: dict[str, Any] = {"name": name if ann else f"snn:{name}",
                                "layers": list(plan.ann_layers if ann else plan.snn_layers)}
        if ann:  # scored on the input it was trained on (the spiking adapter does this itself)
            base["preprocess"] = {"size": 32, "resize": "stretch", "crop_pct": 1.0,
                                  "interpolation": "bicubic", "mean": list(mean),
                                  "std": list(std)}
        else:
            kwargs["img_size"] = 32
        entries.append({**base, "label": plan.label(name, True),
                        "weights": str(checkpoints[name]), "kwargs": dict(kwargs)})
        if plan.untrained_controls:
            entries.append({**base, "label": plan.label(name, False), "untrained": True,
                            "seed": plan.seed, "kwargs": dict(kwargs)})
    return entries


def scoring_configs(plan: StudyPlan, entries: list[dict[str, Any]], allen: Path,
                    device: str) -> dict[str, dict[str, Any]]:
    """The two runner configs (one stimulus set each): the 92 objects against human and monkey
    IT RDMs, and the Allen-layout natural scenes against the two-photon responses per
    (area, Cre line)."""
    rsa = {"name": "rsa", "options": {"rdm_method": "correlation", "compare": "spearman"}}
    common = {"models": entries, "n_bootstrap": plan.n_bootstrap, "seed": plan.seed,
              "batch_size": 64, "device": device}
    allen_opts = {"path": str(allen)}
    return {
        "k92": {"name": "spiking_vs_IT", "stimuli": {"source": "kriegeskorte92"},
                "neural": [{"source": "kriegeskorte92.human_IT", "label": "human IT"},
                           {"source": "kriegeskorte92.monkey_IT", "label": "monkey IT"}],
                "metrics": [rsa], **common},
        "allen": {"name": "spiking_vs_mouse", "stimuli": {"source": "allen.natural_scenes",
                                                          "options": allen_opts},
                  "neural": [{"source": "allen.ophys_natural_scenes", "label": "allen",
                              "options": dict(allen_opts), "split_by": list(plan.allen_split_by),
                              "min_neuroids": 5}],
                  "metrics": [{"name": "rsa", "options": {"rdm_method": "correlation",
                                                          "compare": "spearman",
                                                          "n_splits": 5}}], **common},
    }
