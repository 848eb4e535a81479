"""`cortexalign profile MODEL --weights CKPT` measures the model with those weights."""

from __future__ import annotations

from safetensors.torch import save_file
from typer.testing import CliRunner

from cortexalign.cli import app
from cortexalign.models import load_model


def test_profile_with_weights_names_the_file(tmp_path):
    m = load_model("sam_vit_b", untrained=True, tiny=True, img_size=64, seed=3)
    ckpt = tmp_path / "tiny_sam.safetensors"
    save_file({k: v.contiguous() for k, v in m.module.state_dict().items()}, str(ckpt))
    res = CliRunner().invoke(app, ["profile", "sam_vit_b", "--weights", str(ckpt), "--kwarg",
                                   "tiny=true", "--kwarg", "img_size=64", "--repeats", "1",
                                   "--device", "cpu", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "untrained" not in res.output
    from cortexalign.results import ResultsStore

    cards = ResultsStore(tmp_path / "run" / "results.duckdb", read_only=True).frame("model_cards")
    assert cards["model_id"].str.endswith("@file:tiny_sam.safetensors").all()


def test_profile_missing_weights_fails_clearly(tmp_path):
    res = CliRunner().invoke(app, ["profile", "sam_vit_b", "--weights", str(tmp_path / "no.pt"),
                                   "--kwarg", "tiny=true"])
    assert res.exit_code != 0 and "no.pt" in res.output
