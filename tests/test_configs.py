"""Every config shipped in configs/ validates against its schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("train_*.yaml")), ids=lambda p: p.name)
def test_training_configs_validate(path):
    from cortexalign.spiking import SNN_MODELS
    from cortexalign.spiking.train import TrainConfig

    cfg = TrainConfig.model_validate(yaml.safe_load(path.read_text()))
    assert cfg.model in SNN_MODELS and cfg.time_steps == 4 and cfg.lr == pytest.approx(1e-3)


def test_experiment_config_validates():
    from cortexalign.bench import load_config

    cfg = load_config(CONFIGS / "attention_vs_mouse_cortex.yaml")
    assert any(m.name.startswith("sam") for m in cfg.models)
