"""The simulated survey's design: sizes, the experiments per area, and what is planted.

A simulated data directory mirrors the Allen Brain Observatory two-photon survey (de Vries et al.
2020): six visual areas, Cre lines imaged at the depths the survey targeted, natural scenes shown
``trials`` times each. One (area, Cre line, cortical layer) group is *planted*: its neurons
respond in proportion to how much of each image falls where a chosen block of a chosen model
attends (its mean attention map over the scenes). Every other neuron responds to a sparse random
selectivity over the images, so its response-weighted map holds no attention structure and its
permutation p-value is uniform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SimSpec", "Planted", "SIM_SIZES", "CPU_EXPERIMENTS", "FULL_EXPERIMENTS",
           "ALL_AREAS", "GENOTYPES"]

ALL_AREAS: tuple[str, ...] = ("VISp", "VISl", "VISal", "VISpm", "VISrl", "VISam")

GENOTYPES: dict[str, str] = {
    "Cux2-CreERT2": "Cux2-CreERT2/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt",
    "Emx1-IRES-Cre": "Emx1-IRES-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt",
    "Rorb-IRES2-Cre": "Rorb-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt",
    "Scnn1a-Tg3-Cre": "Scnn1a-Tg3-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt",
    "Rbp4-Cre_KL100": "Rbp4-Cre_KL100/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt",
    "Fezf2-CreER": "Fezf2-CreER/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt",
    "Ntsr1-Cre_GN220": "Ntsr1-Cre_GN220/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt",
    "Pvalb-IRES-Cre": "Pvalb-IRES-Cre/wt;Ai162(TIT2L-GC6s-ICL-tTA2)/wt",
    "Sst-IRES-Cre": "Sst-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt",
    "Vip-IRES-Cre": "Vip-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt",
}
"""Cre line -> the genotype string the NWB files carry (Cre line first, as AllenSDK parses it)."""

CPU_EXPERIMENTS: tuple[tuple[str, int], ...] = (
    ("Cux2-CreERT2", 175), ("Cux2-CreERT2", 275), ("Sst-IRES-Cre", 275), ("Sst-IRES-Cre", 375),
    ("Vip-IRES-Cre", 175), ("Pvalb-IRES-Cre", 375), ("Pvalb-IRES-Cre", 550))
"""(Cre line, imaging depth um) of the experiments in each area at ``--size cpu``: four Cre
lines at the four depths 175 / 275 / 375 / 550 um (layers 2/3, 4, 5, 6)."""

FULL_EXPERIMENTS: tuple[tuple[str, int], ...] = CPU_EXPERIMENTS + (
    ("Emx1-IRES-Cre", 175), ("Emx1-IRES-Cre", 275), ("Emx1-IRES-Cre", 375),
    ("Rorb-IRES2-Cre", 275), ("Scnn1a-Tg3-Cre", 375), ("Rbp4-Cre_KL100", 375),
    ("Fezf2-CreER", 375), ("Ntsr1-Cre_GN220", 550), ("Vip-IRES-Cre", 275))
"""The ``--size full`` experiments per area: 16 x 6 areas = 96 experiments. Scnn1a at 375 um is
layer 4 by the Cre-line convention (``cortexalign.neural.allen.cortical_layer``)."""


@dataclass(frozen=True)
class Planted:
    """What the simulation plants: the group whose neurons follow a model block's attention.

    ``model`` is a config model entry (name, kwargs, untrained...) and ``block`` one of its
    attention blocks; ``gain`` scales the planted drive against the trial noise (sd 1).
    """

    model: dict[str, Any]
    block: str
    area: str = "VISal"
    cre_line: str = "Cux2-CreERT2"
    depth: int = 175
    gain: float = 1.0


@dataclass(frozen=True)
class SimSpec:
    """The size of a simulated data directory (``SIM_SIZES`` holds the named ones).

    ``n_images`` scenes of ``image_hw`` pixels shown ``trials`` times each (plus blanks);
    ``experiments`` (Cre line, depth) per area in ``areas``, ``cells`` neurons each;
    ``coco_images`` images in the segmentation set (``coco_hw`` pixels).
    """

    n_images: int = 118
    image_hw: tuple[int, int] = (918, 1174)
    trials: int = 50
    areas: tuple[str, ...] = ALL_AREAS
    experiments: tuple[tuple[str, int], ...] = CPU_EXPERIMENTS
    cells: int = 12
    coco_images: int = 12
    coco_hw: tuple[int, int] = (480, 640)
    noise: float = 1.0
    planted: Planted = field(default_factory=lambda: Planted(
        model={"name": "efficient_sam_vit_t", "untrained": True, "kwargs": {"img_size": 512}},
        block="blocks.9.attn"))

    @property
    def n_experiments(self) -> int:
        """Number of simulated experiments: every area times every experiment per area."""
        return len(self.areas) * len(self.experiments)


SIM_SIZES: dict[str, SimSpec] = {
    "cpu": SimSpec(),
    "full": SimSpec(experiments=FULL_EXPERIMENTS, cells=42, coco_images=100,
                    planted=Planted(model={"name": "efficient_sam_vit_t", "untrained": True},
                                    block="blocks.9.attn")),
}
"""``cpu``: 42 experiments x 12 cells (504 neurons), the planted block at 512 px; ``full``: 96
experiments x 42 cells (4,032 neurons), the planted block at SAM's native 1024 px."""
