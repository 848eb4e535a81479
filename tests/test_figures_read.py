"""The package's other figures, as a reader meets them (issue 25): the variance-partitioning bars,
the SAE-BrainMap surface maps and the spiking training curves say what they show. (The layer-wise
figure: tests/reports/test_layerwise_figure.py; the compare-layers heatmap:
tests/metrics/test_layer_similarity.py.)"""

from __future__ import annotations

import re

import numpy as np
import pytest

from cortexalign.metrics import variance_partitioning
from cortexalign.neural import make_responses


def test_partition_bars_name_components_and_draw_the_full_model():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 8)), rng.normal(size=(60, 6))
    y = a[:, :2] @ rng.normal(size=(2, 10)) + b[:, :2] @ rng.normal(size=(2, 10)) \
        + rng.normal(size=(60, 10))
    vp = variance_partitioning({"layer": a, "pixels": b},
                               make_responses(y, [f"s{i}" for i in range(60)]))
    ax = vp.plot().axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == \
        ["unique to layer", "unique to pixels", "shared by layer & pixels"]
    (label,) = [t.get_text() for t in ax.get_legend().get_texts()]
    assert re.fullmatch(r"all sets together: \d\.\d{3}", label)
    assert ax.get_title() == "variance partitioning: 10 neuroids, 60 stimuli, 5-fold CV"


def test_surface_map_names_views_values_and_layers(tmp_path, monkeypatch):
    pytest.importorskip("nilearn")
    import matplotlib.figure

    from cortexalign.neural.fmri.surface import _fsaverage, plot_surface_values

    try:
        fs, _ = _fsaverage("fsaverage5")
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"fsaverage5 mesh unavailable offline: {err}")
    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda self, path, **kw: saved.append(self))
    surf = {h: np.where(fs.inflated.parts[h].coordinates[:, 1] < -40, 2.0, np.nan)
            for h in ("left", "right")}
    plot_surface_values(surf, tmp_path / "s.png", title="layer of each voxel's best unit",
                        label="layer", tick_labels={1.0: "blocks.2", 2.0: "blocks.5"},
                        vmin=1.0, vmax=2.0, cmap="turbo")
    (fig,) = saved
    titles = {ax.get_title() for ax in fig.axes if ax.get_title()}
    assert titles == {"left hemisphere, lateral", "left hemisphere, ventral",
                      "right hemisphere, lateral", "right hemisphere, ventral"}
    bar = fig.axes[-1]
    assert bar.get_ylabel() == "layer"
    assert [t.get_text() for t in bar.get_yticklabels()] == ["blocks.2", "blocks.5"]
    assert any("no value" in t.get_text() for t in fig.texts)


def test_spiking_curves_give_a_model_one_colour_and_dash_the_held_out_curve():
    from cortexalign.reports._svg import Series, line_svg

    ep = [1, 2, 3]
    svg = str(line_svg([Series("hst: train", ep, [0.2, 0.3, 0.4], group="hst"),
                        Series("hst: test (dashed)", ep, [0.1, 0.2, 0.3], group="hst",
                               dashed=True),
                        Series("tdf: train", ep, [0.3, 0.4, 0.5], group="tdf")],
                       title="training accuracy", x_label="epoch", y_label="accuracy"))
    lines = re.findall(r'<polyline [^>]*stroke="(#[0-9A-F]+)"[^>]*?(stroke-dasharray="[^"]+")?/>',
                       svg)
    assert lines[0][0] == lines[1][0] != lines[2][0]
    assert [bool(dash) for _, dash in lines] == [False, True, False]
