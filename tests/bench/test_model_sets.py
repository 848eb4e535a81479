"""Model sets for sweeps: a select: entry expands to the models timm / torchvision list locally,
filtered by tag, size and exclusion, printed before the run; bad filters are refused by name."""

from __future__ import annotations

import fnmatch
import re

import pytest
import timm
import torch

from cortexalign.bench import load_config
from cortexalign.bench._model_sets import MAX_MODELS, expand_model_sets
from cortexalign.errors import InputError


def _config(models):
    return {"stimuli": {"source": "kriegeskorte92"}, "models": models,
            "neural": [{"source": "kriegeskorte92.human_IT"}], "metrics": [{"name": "rsa"}]}


def test_a_pattern_expands_to_timms_own_list_in_name_order():
    out, notes = expand_model_sets([{"select": "timm:resnet1*", "layers": ["layer4"]}])
    assert [m["name"] for m in out] == [f"timm:{n}" for n in sorted(timm.list_models("resnet1*"))]
    assert all(m["layers"] == ["layer4"] for m in out)  # the other keys go to every model
    assert notes[0].names and "timm:resnet1*" in notes[0].describe()


def test_tag_exclusion_and_limit_filters():
    out, notes = expand_model_sets([{"select": "timm:vit_tiny*", "pretrained_tag": "in21k",
                                     "exclude": ["*_384*"], "limit": 2}])
    names = [m["name"].removeprefix("timm:") for m in out]
    tagged = sorted(n for n in timm.list_models("vit_tiny*", pretrained=True)
                    if "in21k" in n.partition(".")[2] and not fnmatch.fnmatch(n, "*_384*"))
    assert names == tagged[:2]
    assert notes[0].dropped["over the limit"] == len(tagged) - 2


def test_size_bounds_use_the_real_parameter_counts():
    out, notes = expand_model_sets([{"select": "torchvision:resnet*", "max_params_m": 30}])
    names = [m["name"].removeprefix("torchvision:") for m in out]
    import torchvision

    for n in names:
        with torch.device("meta"):
            model = torchvision.models.get_model(n, weights=None)
        assert sum(p.numel() for p in model.parameters()) <= 30e6
    assert "resnet18" in names and "resnet50" in names and "resnet152" not in names
    assert notes[0].dropped["outside the size bounds"] >= 1


def test_plain_entries_stay_in_place():
    plain = {"name": "gabor_v1", "layers": ["simple"]}
    out, notes = expand_model_sets([plain, {"select": "torchvision:alexnet"}])
    assert out[0] is plain and out[1]["name"] == "torchvision:alexnet" and len(notes) == 1


@pytest.mark.parametrize("entry,where", [
    ({"select": "vit_*"}, "select"),
    ({"select": "timm:vit_*", "max_params_m": -3}, "max_params_m"),
    ({"select": "timm:vit_*", "limit": 0}, "limit"),
    ({"select": "timm:vit_*", "exclude": "*giant*"}, "exclude"),
    ({"select": "timm:no_such_model_*"}, "select"),
    ({"select": "torchvision:resnet*", "pretrained_tag": "in1k"}, "pretrained_tag"),
    ({"select": "timm:vit_*", "name": "gabor_v1"}, "models[0]"),
])
def test_bad_sets_are_refused_naming_the_key(entry, where):
    with pytest.raises(InputError, match=re.escape(where)):
        expand_model_sets([entry])


def test_a_huge_sweep_must_say_so():
    with pytest.raises(InputError, match=f"at most {MAX_MODELS}"):
        expand_model_sets([{"select": "timm:*"}])


def test_load_config_expands_and_reports_before_validation():
    lines = []
    cfg = load_config(_config([{"select": "timm:resnet1*", "layers": ["layer4"],
                                "untrained": True}]), report=lines.append)
    assert [m.name for m in cfg.models] == [f"timm:{n}" for n in
                                           sorted(timm.list_models("resnet1*"))]
    assert all(m.untrained for m in cfg.models)
    assert len(lines) == 1 and lines[0].startswith("model set timm:resnet1*")
