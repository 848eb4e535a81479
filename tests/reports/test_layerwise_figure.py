"""The layer-wise figure a reader sees first (issue 25, point 6): a labelled ceiling band, layer
names on the depth axis, the measure and comparison on the y axis, one legend, and a note where a
target has no ceiling."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from cortexalign.reports._figures import draw_layerwise, layerwise_figure


def _frame() -> pd.DataFrame:
    rows = []
    lite = [f"blocks.{i}" for i in range(7)] + ["bn2", "logits"]
    for model, layers in (("Lite0", lite), ("Lite0 (untrained)", lite),
                          ("Gabor V1", ["simple", "complex"])):
        for k, layer in enumerate(layers):
            for target, ceiling, by in (("human IT", (0.306, 0.525), "subject"),
                                        ("monkey IT", (np.nan, np.nan), "rdm")):
                extra = {"layer_index": k, "n_layers": len(layers), "compare": "spearman",
                         "rdm_method": "correlation", "ceiling_by": by, "ci_level": 0.95}
                rows.append({"model": model, "layer": layer, "target": target, "metric": "rsa",
                             "value": 0.1 + 0.01 * k, "ci_low": 0.05, "ci_high": 0.2,
                             "ceiling_low": ceiling[0], "ceiling_high": ceiling[1],
                             "extra": json.dumps(extra)})
    return pd.DataFrame(rows)


@pytest.fixture
def fig():
    figure = draw_layerwise(_frame(), title="quickstart")
    yield figure
    plt.close(figure)


def test_one_legend_names_models_ceiling_band_and_interval(fig):
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:3] == ["Lite0", "Lite0 (untrained)", "Gabor V1"]
    assert "noise ceiling (leave-one-subject-out, lower to upper bound)" in labels
    assert "shading: 95% bootstrap interval" in labels


def test_layer_names_on_the_depth_axis_and_at_other_models_points(fig):
    human = fig.axes[0]
    assert [t.get_text() for t in human.get_xticklabels()] == \
        [f"blocks.{i}" for i in range(7)] + ["bn2", "logits"]
    assert "layer of Lite0" in human.get_xlabel()
    notes = {t.get_text() for t in human.texts}
    assert {"simple", "complex"} <= notes and "blocks.3" not in notes  # only where they differ


def test_the_y_axis_names_the_measure_and_the_comparison(fig):
    assert fig.axes[0].get_ylabel() == "RSA: Spearman \u03c1 of correlation-distance RDMs"


def test_a_target_without_ceiling_says_so(fig):
    human, monkey = fig.axes
    assert not any("no noise ceiling" in t.get_text() for t in human.texts)
    assert any("no noise ceiling" in t.get_text() for t in monkey.texts)


def test_depth_axis_option_and_the_file(tmp_path):
    fig = draw_layerwise(_frame(), layer_axis="depth")
    assert fig.axes[0].get_xlabel().startswith("relative layer depth")
    plt.close(fig)
    path = layerwise_figure(_frame(), tmp_path / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="layer_axis"):
        draw_layerwise(_frame(), layer_axis="index")
