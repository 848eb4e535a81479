"""What the study runs: the models, their layers, the neural grid and the metrics, as a config.

``study_config(data, plan)`` builds the ``ExperimentConfig`` the one runner
(``cortexalign.bench``) executes; ``configs/attention_vs_mouse_cortex.yaml`` is the same study
written out for ``cortexalign run``. ``PLANS`` holds the named subsets: ``"full"`` (every
SAM-family model, all 118 scenes, every block, 1,000 permutations) and ``"cpu"`` (the light
models at 512 px, four attention blocks and two or three conv layers each, 64 scenes, 1,999
permutations: a 2-core laptop in minutes).

Why the ``cpu`` plan has these numbers (issue 17, measured on the ``--size cpu`` simulation):

- 64 scenes: the planted group's map Pearson is at z = 2.0 of its permutation null with 32
  scenes (p 0.02: not significant after FDR over 42 groups), 2.7 with 48 and 3.9 with 64 (4.8
  with all 118). A neuron map is a response-weighted sum of the scenes, so with few scenes it
  can only lie in their span, and 1/f scenes span little of a 32 x 32 attention map.
- 1,999 permutations: BH over 42 groups needs a raw p near 0.05 / 42 = 0.0012 for the best
  group; with P permutations p is at least 1 / (P + 1), so 999 would leave p_FDR >= 0.042 even
  for an effect far in the tail. 1,999 gives 0.021.
- map RMSE without permutations: its null needs every permuted map (min-max scaling), about
  three to four times the cost of Pearson's per permutation, and on the simulation it does not detect the planted
  group (p 0.77 at the planted block) while Pearson does; map Pearson and RSA carry the
  p-values. The full plan permutes every map metric.
- batch size 1: at 512 px a batch of 8 allocates activations above the allocator's reuse
  threshold, and every op maps fresh pages (a quarter to a third of the extraction's CPU time
  went to page faults).

Weights: an official checkpoint found in ``DATA/checkpoints`` under its released file name
(``CHECKPOINTS``) is loaded (converted on load, native input size); without one the entry runs
untrained (seeded), and the run says so. The simulator plants its structure with such an
untrained entry, so a study on simulated data scores the planted model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cortexalign.neural.allen import natural_scene_ids

__all__ = ["StudyPlan", "PLANS", "CHECKPOINTS", "study_config", "model_entries", "with_device",
           "config_yaml", "CONFIG_DATA"]

CHECKPOINTS: dict[str, str] = {
    "sam_vit_b": "sam_vit_b_01ec64.pth", "sam_vit_l": "sam_vit_l_0b3195.pth",
    "sam_vit_h": "sam_vit_h_4b8939.pth", "sam2_hiera_t": "sam2_hiera_tiny.pt",
    "sam2_hiera_s": "sam2_hiera_small.pt", "sam2_hiera_b_plus": "sam2_hiera_base_plus.pt",
    "sam2_hiera_l": "sam2_hiera_large.pt", "mobile_sam": "mobile_sam.pt",
    "efficient_sam_vit_t": "efficient_sam_vitt.pt", "efficient_sam_vit_s": "efficient_sam_vits.pt",
    "edge_sam": "edge_sam.pth",
}
"""Registry name -> the released checkpoint's file name (looked up in ``DATA/checkpoints``)."""

ATTENTION_FREE = frozenset({"edge_sam", "pixels"})
"""Entries without attention: scored on conv maps only (``pixels``: the grey image itself)."""

PIXELS = {"name": "pixels", "kwargs": {"size": 64}}
"""The pixel baseline: the grey image at 64 x 64 (its conv map is the image)."""


@dataclass(frozen=True)
class StudyPlan:
    """One way to run the study (``PLANS``).

    ``models``: registry names; ``layers``: per name, the blocks scored for ``attention`` and
    ``conv_map`` (``"all"`` when absent); ``kwargs``: constructor options of every untrained
    entry (e.g. a smaller ``img_size``); ``n_scenes``: the first scenes of the template (None:
    all); ``statistic``: ``peak`` (the paper's) or ``mean`` dF/F; ``split_by``: the neural grid;
    ``seg_images``, ``seg_prompt``, ``profile_repeats``: the config's ``segmentation:`` entry
    (the model cards: mIoU on ``DATA/coco`` and the profile, ``cortexalign.bench._cards``).
    """

    models: tuple[str, ...]
    layers: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)
    n_scenes: int | None = None
    statistic: str = "peak"
    split_by: tuple[str, ...] = ("area", "cre_line", "cortical_layer")
    min_neuroids: int = 5
    min_reliability: float | None = None
    metrics: tuple[dict[str, Any], ...] = (
        {"name": "map_rmse", "options": {"scaling": "minmax"}}, {"name": "map_pearson"},
        {"name": "map_spearman"}, {"name": "rsa", "options": {"rdm_method": "correlation",
                                                              "compare": "spearman"}},
        {"name": "ridge", "options": {"n_folds": 5}})
    n_permutations: int = 1000
    n_bootstrap: int = 1000
    batch_size: int = 8
    seg_images: int | None = None
    seg_prompt: str = "box"
    profile_repeats: int = 10


PLANS: dict[str, StudyPlan] = {
    "full": StudyPlan(models=("sam_vit_b", "sam_vit_l", "sam_vit_h", "sam2_hiera_t",
                              "sam2_hiera_s", "sam2_hiera_b_plus", "sam2_hiera_l", "mobile_sam",
                              "efficient_sam_vit_t", "efficient_sam_vit_s",
                              "edge_sam", "pixels")),
    "cpu": StudyPlan(
        models=("efficient_sam_vit_t", "mobile_sam", "sam2_hiera_t", "edge_sam", "pixels"),
        layers={"efficient_sam_vit_t": {"attention": ["blocks.3.attn", "blocks.6.attn",
                                                      "blocks.9.attn", "blocks.11.attn"],
                                        "conv_map": ["blocks.9", "neck"]},
                "mobile_sam": {"attention": ["stages.1.blocks.1.attn", "stages.2.blocks.2.attn",
                                             "stages.2.blocks.5.attn", "stages.3.blocks.1.attn"],
                               "conv_map": ["stages.2.blocks.5", "neck"]},
                "sam2_hiera_t": {"attention": ["blocks.2.attn", "blocks.5.attn",
                                               "blocks.7.attn", "blocks.9.attn"],
                                 "conv_map": ["blocks.9", "blocks.11"]},
                "edge_sam": {"conv_map": ["stages.2.blocks.15", "fuse_stage3", "neck"]}},
        kwargs={"img_size": 512}, n_scenes=64, n_bootstrap=0, n_permutations=1999,
        metrics=({"name": "map_rmse", "options": {"scaling": "minmax", "n_permutations": 0}},
                 {"name": "map_pearson"},
                 {"name": "rsa", "options": {"rdm_method": "correlation", "compare": "spearman",
                                             "n_splits": 5}},
                 {"name": "ridge", "options": {"n_folds": 3, "inner_folds": 3,
                                               "alphas": [1.0, 100.0, 10000.0]}}),
        batch_size=1, seg_images=6, profile_repeats=3),
}


def model_entries(name: str, plan: StudyPlan, data: Path) -> list[dict[str, Any]]:
    """The config model entries of ``name``: attention (unless convolutional) and conv maps,
    with the official checkpoint when ``data/checkpoints`` holds it, else untrained."""
    ckpt = Path(data) / "checkpoints" / CHECKPOINTS.get(name, "")
    if name == PIXELS["name"]:
        base: dict[str, Any] = copy.deepcopy(PIXELS)
    elif name in CHECKPOINTS and ckpt.is_file():
        base = {"name": name, "weights": str(ckpt)}
    else:
        base = {"name": name, "untrained": True}
        if plan.kwargs:
            base["kwargs"] = dict(plan.kwargs)
    out = []
    for kind, tag in (("attention", "attention"), ("conv_map", "conv")):
        if kind == "attention" and name in ATTENTION_FREE:
            continue
        entry = copy.deepcopy(base) | {"label": f"{name} {tag}", "features": kind}
        layers = plan.layers.get(name, {}).get(kind)
        if layers:
            entry["layers"] = list(layers)
        out.append(entry)
    return out


def study_config(data: str | Path, plan: StudyPlan, name: str = "jalil2026") -> dict[str, Any]:
    """The runner's config (a dict for ``load_config``) of ``plan`` on the data directory."""
    allen = str(Path(data) / "allen")
    stim_opts: dict[str, Any] = {"path": allen}
    neural_opts: dict[str, Any] = {"path": allen, "statistic": plan.statistic,
                                   "window": [0.0, 0.25], "baseline": [-0.5, 0.0]}
    if plan.n_scenes is not None:
        stim_opts["ids"] = neural_opts["ids"] = list(natural_scene_ids(plan.n_scenes))
    neural: dict[str, Any] = {
        "source": "allen.ophys_natural_scenes", "label": "allen", "options": neural_opts,
        "split_by": list(plan.split_by), "min_neuroids": plan.min_neuroids}
    if plan.min_reliability is not None:
        neural["select"] = {"min_reliability": plan.min_reliability}
    models = [e for m in plan.models for e in model_entries(m, plan, Path(data))]
    coco = Path(data) / "coco"
    segmentation = {"coco": str(coco / "annotations" / "instances.json"),
                    "images": str(coco / "images"), "prompt": plan.seg_prompt,
                    "limit": plan.seg_images, "profile_repeats": plan.profile_repeats}
    return {"name": name, "stimuli": {"source": "allen.natural_scenes", "options": stim_opts},
            "models": models, "neural": [neural], "metrics": [dict(m) for m in plan.metrics],
            "segmentation": segmentation,
            "n_bootstrap": plan.n_bootstrap, "n_permutations": plan.n_permutations, "seed": 0,
            "batch_size": plan.batch_size, "device": "auto"}


def with_device(config: dict[str, Any], device: str) -> dict[str, Any]:
    """``config`` with ``device`` set (the CLI's ``--device``)."""
    return dict(config, device=device)



CONFIG_DATA = "data/jalil2026"
"""Where ``configs/attention_vs_mouse_cortex.yaml`` expects the data directory."""


def config_yaml(header: str = "") -> str:
    """``configs/attention_vs_mouse_cortex.yaml``: the full plan on ``CONFIG_DATA`` as YAML,
    after ``header`` (comment lines). A test keeps the shipped file equal to this."""
    import yaml

    body = yaml.safe_dump(study_config(CONFIG_DATA, PLANS["full"],
                                       name="attention_vs_mouse_cortex"),
                          sort_keys=False, width=100, default_flow_style=None)
    return header + body
