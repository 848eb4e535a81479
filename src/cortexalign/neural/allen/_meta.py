"""Allen Brain Observatory vocabulary: visual areas, Cre lines and their cell classes, stimulus ids.

The Cre-line table follows the Allen Brain Observatory Visual Coding releases (de Vries et al.
2020, Nat. Neurosci. 23:138; Siegle et al. 2021, Nature 592:86). A Cre line is classified by its
driver gene, the part before the first ``-`` ("Cux2-CreERT2" -> "Cux2").
"""

from __future__ import annotations

import re

__all__ = ["AREAS", "CRE_CLASS", "BLANK_ID", "N_NATURAL_SCENES", "cell_class", "cre_gene",
           "natural_scene_id", "natural_scene_ids", "parse_genotype", "parse_area",
           "parse_depth", "CRE_LAYER", "LAYER_DEPTHS", "cortical_layer"]

AREAS: tuple[str, ...] = ("VISp", "VISl", "VISal", "VISpm", "VISrl", "VISam")
"""The six visual areas of the Visual Coding two-photon survey."""

CRE_CLASS: dict[str, str] = {
    # excitatory (glutamatergic) drivers
    "Cux2": "excitatory", "Emx1": "excitatory", "Rorb": "excitatory", "Scnn1a": "excitatory",
    "Nr5a1": "excitatory", "Rbp4": "excitatory", "Fezf2": "excitatory", "Tlx3": "excitatory",
    "Ntsr1": "excitatory", "Slc17a7": "excitatory", "Camk2a": "excitatory",
    # inhibitory (GABAergic) drivers
    "Pvalb": "inhibitory", "Sst": "inhibitory", "Vip": "inhibitory", "Npy": "inhibitory",
    "Gad2": "inhibitory", "Htr3a": "inhibitory", "Ndnf": "inhibitory", "Chat": "inhibitory",
}
"""Driver gene -> ``"excitatory"`` or ``"inhibitory"``; anything else is ``"unknown"``."""

BLANK_ID = "blank"
"""Stimulus id of the mean-luminance grey screen (template frame -1 in the Allen tables)."""

N_NATURAL_SCENES = 118


def natural_scene_id(frame: int) -> str:
    """``ns000`` ... ``ns117`` for template frames 0..117; ``blank`` for frame -1."""
    return BLANK_ID if int(frame) == -1 else f"ns{int(frame):03d}"


def natural_scene_ids(n: int = N_NATURAL_SCENES, include_blank: bool = False) -> tuple[str, ...]:
    """The ids of the first ``n`` template frames, then ``blank`` when asked (always last)."""
    return tuple(natural_scene_id(k) for k in range(n)) + ((BLANK_ID,) if include_blank else ())


def cre_gene(cre_line: str) -> str:
    """The driver gene of a Cre line ("Rbp4-Cre_KL100" -> "Rbp4")."""
    return str(cre_line).split("-")[0].split("/")[0].strip()


def cell_class(cre_line: str) -> str:
    """``"excitatory"``, ``"inhibitory"`` or ``"unknown"`` for a Cre line."""
    return CRE_CLASS.get(cre_gene(cre_line), "unknown")


def parse_genotype(genotype: str) -> tuple[str, str]:
    """(cre_line, reporter) from an Allen genotype string.

    "Cux2-CreERT2/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt" -> ("Cux2-CreERT2", "Ai93(TITL-GCaMP6f)").
    The Cre line is the first ``;`` segment (AllenSDK's convention); the reporter is the segment
    naming an Ai reporter. Missing parts come back as ``"unknown"``.
    """
    parts = [p.strip().split("/")[0] for p in str(genotype).split(";") if p.strip()]
    cre = parts[0] if parts else "unknown"
    reporter = next((p for p in parts if re.match(r"Ai\d+", p)), "unknown")
    return cre, reporter


def parse_area(location: str) -> str:
    """The area acronym in an imaging-plane location string ("VISal" or "area: VISal, depth...")."""
    tokens = re.findall(r"VIS[a-z]*", str(location))
    for tok in tokens:
        if tok in AREAS:
            return tok
    return tokens[0] if tokens else str(location).strip() or "unknown"


def parse_depth(depth: str | float | int) -> float:
    """Imaging depth in micrometres from "175 microns", "175" or a number (NaN when absent)."""
    m = re.search(r"-?\d+(\.\d+)?", str(depth))
    return float(m.group(0)) if m else float("nan")


CRE_LAYER: dict[str, str] = {
    "Rorb": "L4", "Scnn1a": "L4", "Nr5a1": "L4",
    "Rbp4": "L5", "Fezf2": "L5", "Tlx3": "L5",
    "Ntsr1": "L6",
}
"""Driver genes whose expression is confined to one layer: their cells take that layer whatever
the imaging depth (the Allen Brain Observatory's convention, de Vries et al. 2020, Fig. 1)."""

LAYER_DEPTHS: tuple[tuple[float, str], ...] = ((250.0, "L2/3"), (350.0, "L4"), (500.0, "L5"),
                                               (float("inf"), "L6"))
"""(upper depth bound in um, layer): the Brain Observatory's targeted depths 150-250 um are
layer 2/3, 265-350 layer 4, 350-500 layer 5 and deeper layer 6."""


def cortical_layer(cre_line: str, depth: float) -> str:
    """The cortical layer ("L2/3", "L4", "L5", "L6") of a cell, from its Cre line and depth.

    Layer-specific drivers (``CRE_LAYER``: Rorb, Scnn1a, Nr5a1 -> L4; Rbp4, Fezf2, Tlx3 -> L5;
    Ntsr1 -> L6) set the layer; every other line (Cux2, Emx1, Slc17a7, Pvalb, Sst, Vip...) is
    placed by its imaging depth with ``LAYER_DEPTHS`` (the Allen convention: a Cux2 plane at
    175 um is L2/3, at 275 um L4; an Sst plane at 375 um L5). An unknown depth gives "unknown".
    """
    layer = CRE_LAYER.get(cre_gene(cre_line))
    if layer is not None:
        return layer
    d = float(depth)
    if d != d:  # NaN
        return "unknown"
    return next(name for bound, name in LAYER_DEPTHS if d < bound)
