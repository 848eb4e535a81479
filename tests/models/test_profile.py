"""profile_model: FLOPs against a hand count, parameter count, card fields, store round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.models import ModelAdapter, Preprocess
from cortexalign.models.profile import (
    count_flops,
    count_parameters,
    profile_model,
)


class ConvLinear(nn.Module):
    """conv 3->4, 3x3, stride 1, padding 1 on 8x8 -> flatten -> linear 256 -> 5."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def _adapter() -> ModelAdapter:
    pre = Preprocess(size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3)
    return ModelAdapter("toy", "toy@untrained", ConvLinear(), pre, torch.device("cpu"))


def test_flops_match_hand_count():
    b = 3
    conv = 2 * (4 * 8 * 8) * (3 * 3 * 3)  # 2 x outputs x MACs per output
    linear = 2 * (4 * 8 * 8) * 5
    assert count_flops(ConvLinear(), torch.randn(b, 3, 8, 8)) == b * (conv + linear)


def test_parameters_match_hand_count():
    assert count_parameters(ConvLinear()) == (4 * 3 * 3 * 3 + 4) + (256 * 5 + 5)


def test_profile_card_fields():
    card = profile_model(_adapter(), device="cpu", batch_size=2, n_warmup=1, n_repeat=3)
    assert card.model_id == "toy@untrained" and card.device.startswith("cpu:")
    assert card.flops == 2 * 256 * 27 + 2 * 256 * 5  # per image
    assert card.params == 4 * 27 + 4 + 256 * 5 + 5
    assert card.latency_ms > 0 and card.peak_mem_mb >= 0
    assert card.extra["memory_method"] == "cpu_rss_growth_sampled_1ms"
    assert card.extra["input_size"] == [8, 8] and card.extra["batch_size"] == 2


def test_profile_by_name_at_native_size():
    card = profile_model("sam_vit_b", device="cpu", n_warmup=0, n_repeat=1, untrained=True,
                         tiny=True)
    assert card.extra["input_size"] == [64, 64]
    assert card.model_id == "sam_vit_b[tiny]@untrained-seed0" and card.flops > 0


@pytest.mark.parametrize("kw", [{"batch_size": 0}, {"n_repeat": 0}, {"input_size": (0, 8)}])
def test_bad_arguments_are_refused(kw):
    with pytest.raises(InputError):
        profile_model(_adapter(), device="cpu", **kw)


def test_card_lands_in_results_store(tmp_path):
    from cortexalign.results import ModelCard, ResultsStore

    store = ResultsStore(tmp_path / "results.duckdb")
    card = profile_model(_adapter(), device="cpu", n_warmup=0, n_repeat=2)
    store.put_model_card(ModelCard.from_profile(card, miou=0.5))
    rows = store.frame("model_cards")
    assert len(rows) == 1 and rows.loc[0, "miou"] == 0.5 and rows.loc[0, "params"] == card.params
    with pytest.raises(InputError):
        ModelCard.from_profile(card, miou=1.5)
