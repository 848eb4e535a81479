from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cortexalign.cli import app

runner = CliRunner()


COMMANDS = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]


def test_the_command_list_is_complete():
    assert {"run", "quickstart", "models", "layers", "extract", "metrics", "datasets", "results",
            "status", "report", "profile", "sae-brainmap", "train-snn", "eval-snn"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command):
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output


def test_quickstart_show_config_prints_yaml():
    res = runner.invoke(app, ["quickstart", "--show-config"])
    assert res.exit_code == 0 and "kriegeskorte92.human_IT" in res.output


def test_bad_config_exits_2_with_the_key_and_writes_nothing(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stimuli: {source: kriegeskorte92}\nmodels: [{name: gabor_v1}]\n"
                   "neural: [{source: kriegeskorte92.human_IT}]\nmetrics: [{name: rsa}]\n"
                   "n_bootstarp: 10\n")
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(cfg), "--out", str(out)])
    assert res.exit_code == 2
    assert "n_bootstarp" in res.output and "n_bootstrap" in res.output
    assert not out.exists()


def test_unknown_model_lists_close_matches(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stimuli: {source: kriegeskorte92}\nmodels: [{name: efficientnet_lite}]\n"
                   "neural: [{source: kriegeskorte92.human_IT}]\nmetrics: [{name: rsa}]\n")
    res = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "efficientnet_lite0" in res.output
    assert not (tmp_path / "out").exists()


def test_profile_prints_a_card_and_stores_it(tmp_path):
    from cortexalign.results import ResultsStore

    res = runner.invoke(app, ["profile", "gabor_v1", "--repeats", "1", "--out", str(tmp_path),
                              "--kwarg", "image_size=32", "--kwarg", "image_deg=null",
                              "--kwarg", "frequencies=[0.1, 0.25]"])
    assert res.exit_code == 0, res.output
    assert "FLOPs / image" in res.output
    from cortexalign.models import load_model

    ref = load_model("gabor_v1", image_size=32, image_deg=None, frequencies=[0.1, 0.25])
    cards = ResultsStore(tmp_path / "results.duckdb").frame("model_cards")
    assert len(cards) == 1 and cards["flops"].iloc[0] > 0
    assert cards["params"].iloc[0] == sum(p.numel() for p in ref.module.parameters())


def test_spiking_commands_are_mounted():
    for command in ("train-snn", "eval-snn"):
        res = runner.invoke(app, [command, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output
