"""The runner extracts the attention and conv maps of one model from the same forward passes.

A config with ``sam_vit_b attention`` and ``sam_vit_b conv`` (the jalil2026 study's pairs) runs
the tiny SAM once per batch, not once per entry, and scores both entries as it would alone.
"""

from __future__ import annotations

import math

from allen_planted import N_IMAGES, SAM_TINY, write_planted

from cortexalign.bench import load_config, run_experiment
from cortexalign.features import _loop
from cortexalign.results import ResultsStore


def _config(data, models) -> dict:
    return {"name": "shared_forward", "seed": 0, "batch_size": 8, "n_bootstrap": 0,
            "stimuli": {"source": "allen.natural_scenes", "options": {"path": str(data)}},
            "models": models, "metrics": [{"name": "map_pearson"}],
            "neural": [{"source": "allen.ophys_natural_scenes", "label": "allen",
                        "options": {"path": str(data)}, "split_by": ["area"]}]}


def test_attention_and_conv_entries_share_the_forward(tmp_path, monkeypatch):
    data = write_planted(tmp_path / "allen")
    calls = []
    forward = _loop._forward  # one call per batch of the one extraction loop
    monkeypatch.setattr(_loop, "_forward",
                        lambda *a: calls.append(a[1].values_name) or forward(*a))
    attn = dict(SAM_TINY, label="sam attention", features="attention",
                layers=["blocks.1.attn", "blocks.3.attn"])
    conv = dict(SAM_TINY, label="sam conv", features="conv_map", layers=["blocks.0", "neck"])
    other = dict(SAM_TINY, label="sam seed 1 conv", features="conv_map", layers=["neck"],
                 seed=1)  # other weights: its own pass
    run_experiment(load_config(_config(data, [attn, conv, other])), tmp_path / "both",
                   progress=False)
    n_batches = math.ceil(N_IMAGES / 8)
    assert calls == ["attention maps and conv maps"] * n_batches + ["conv maps"] * n_batches
    both = ResultsStore(tmp_path / "both" / "results.duckdb", read_only=True).scores_frame()
    calls.clear()
    run_experiment(load_config(_config(data, [conv])), tmp_path / "alone", progress=False)
    alone = ResultsStore(tmp_path / "alone" / "results.duckdb", read_only=True).scores_frame()
    assert calls == ["conv maps"] * n_batches
    key = ["model", "layer", "target"]
    merged = both.merge(alone, on=key, suffixes=("", "_alone"))
    assert len(merged) == len(alone) == 4 and (merged["value"] == merged["value_alone"]).all()
