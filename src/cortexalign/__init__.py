"""cortexalign: measure how vision models line up with the visual brain.

The public surface, in the order a script uses it::

    import cortexalign as ca
    stimuli = ca.load_stimuli("kriegeskorte92")                 # StimulusSet
    model = ca.load_model("efficientnet_lite0")                  # ModelAdapter
    feats = ca.extract_features(model, stimuli, ["blocks.5"])    # {layer: Features}
    human_it = ca.load_neural("kriegeskorte92.human_IT")         # RDMSet (8 subject-session RDMs)
    s = ca.score("rsa", feats["blocks.5"].values, human_it, n_bootstrap=1000)
    print(s.value, (s.ci_low, s.ci_high), (s.ceiling_low, s.ceiling_high))

Names are imported lazily so that ``cortexalign --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "StimulusSet": "cortexalign.stimuli",
    "load_stimuli": "cortexalign.stimuli",
    "load_folder": "cortexalign.stimuli",
    "load_npz": "cortexalign.stimuli",
    "load_bundled": "cortexalign.stimuli",
    "RDMSet": "cortexalign.neural",
    "make_responses": "cortexalign.neural",
    "load_neural": "cortexalign.neural",
    "load_model": "cortexalign.models",
    "list_models": "cortexalign.models",
    "attention_maps": "cortexalign.models.attention",
    "conv_maps": "cortexalign.models.attention",
    "extract_features": "cortexalign.features",
    "FeatureCache": "cortexalign.features",
    "save_features": "cortexalign.features", "load_features": "cortexalign.features",
    "score": "cortexalign.metrics",
    "compute_rdm": "cortexalign.metrics",
    "compare_rdms": "cortexalign.metrics",
    "cka": "cortexalign.metrics",
    "layer_similarity": "cortexalign.metrics",
    "list_metrics": "cortexalign.metrics",
    "Score": "cortexalign.metrics",
    "variance_partitioning": "cortexalign.metrics",
    "banded_ridge": "cortexalign.metrics",
    "ExperimentConfig": "cortexalign.bench",
    "load_config": "cortexalign.bench",
    "run_experiment": "cortexalign.bench",
    "ResultsStore": "cortexalign.results",
    "CortexAlignError": "cortexalign.errors",
    "InputError": "cortexalign.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cortexalign' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
