from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd

from cortexalign.reports import best_layers, write_summary


def _frame(model="net", layers=3):
    rows = []
    for t in ("human IT", "monkey IT"):
        for i in range(layers):
            v = 0.1 * (i + 1)
            rows.append(dict(model=model, layer=f"layer{i}", target=t, metric="rsa", value=v,
                             ci_low=v - 0.05, ci_high=v + 0.05, ceiling_low=0.5, ceiling_high=0.7,
                             extra=json.dumps({"layer_index": i, "n_layers": layers})))
    return pd.DataFrame(rows)


def test_best_layer_is_the_argmax_with_its_interval():
    best = best_layers(_frame())
    assert list(best["layer"]) == ["layer2", "layer2"]
    np.testing.assert_allclose(best["normalized"], 0.3 / 0.5)


def test_labels_are_escaped_in_html(tmp_path):
    evil = '<script>alert("x")</script>'
    paths = write_summary(_frame(model=evil), tmp_path, name="<b>run</b>", config_hash="abc",
                          citations=["<i>cite</i>"])
    html = paths["report"].read_text()
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<b>run</b>" not in html
    img = mpimg.imread(paths["figure"])
    assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0  # a drawn figure, not blank
