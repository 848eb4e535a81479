"""Cortical layers from Cre line and depth (the Allen Brain Observatory convention)."""

from __future__ import annotations

import math

import pytest

from cortexalign.neural.allen import cortical_layer


@pytest.mark.parametrize(("cre", "depth", "layer"), [
    ("Cux2-CreERT2", 175, "L2/3"), ("Cux2-CreERT2", 275, "L4"), ("Emx1-IRES-Cre", 375, "L5"),
    ("Slc17a7-IRES2-Cre", 550, "L6"), ("Vip-IRES-Cre", 175, "L2/3"), ("Sst-IRES-Cre", 275, "L4"),
    ("Sst-IRES-Cre", 375, "L5"), ("Pvalb-IRES-Cre", 550, "L6"),
    # layer-specific drivers keep their layer whatever the imaging depth
    ("Rorb-IRES2-Cre", 275, "L4"), ("Scnn1a-Tg3-Cre", 375, "L4"), ("Nr5a1-Cre", 250, "L4"),
    ("Rbp4-Cre_KL100", 300, "L5"), ("Fezf2-CreER", 375, "L5"), ("Tlx3-Cre_PL56", 375, "L5"),
    ("Ntsr1-Cre_GN220", 500, "L6"),
])
def test_allen_convention(cre, depth, layer):
    assert cortical_layer(cre, depth) == layer


def test_bounds_and_unknown_depth():
    assert cortical_layer("Cux2-CreERT2", 249.9) == "L2/3"
    assert cortical_layer("Cux2-CreERT2", 250) == "L4"
    assert cortical_layer("Sst-IRES-Cre", 350) == "L5"
    assert cortical_layer("Sst-IRES-Cre", 500) == "L6"
    assert cortical_layer("Sst-IRES-Cre", math.nan) == "unknown"
    assert cortical_layer("Ntsr1-Cre_GN220", math.nan) == "L6"
