"""train_aligned on a tiny ANN and a tiny SNN; the held-out split enforced; resume; provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cortexalign.align import (
    AlignConfig,
    AlignmentLoss,
    BrainTarget,
    HeldOutLeakError,
    circularity,
    list_checkpoints,
    run_frame,
    split_stimuli,
    train_aligned,
)
from cortexalign.align.train import _Run
from cortexalign.models import load_model

TINY = dict(model="timm:test_convnext2", layers=["stages.1"], steps=3, eval_every=3,
            batch_size=8, max_task_train=40, max_task_test=20, progress=False, device="cpu")
SNN = dict(model="snn:hst_tiny", layers=["stage3.block0"], image_size=16, steps=2,
           eval_every=2, batch_size=8, max_task_train=40, max_task_test=20, progress=False,
           device="cpu", objective_options={"compare": "pearson", "rdm_method": "euclidean"})


def test_split_is_stratified_by_category_and_disjoint():
    target = BrainTarget.load("kriegeskorte92.human_IT", heldout_fraction=0.25, seed=0)
    split = target.split
    assert not set(split.train) & set(split.heldout)
    assert len(split.train) + len(split.heldout) == 92 and split.stratified_by == "category"
    cats = dict(zip(target.stimuli.ids, target.stimuli.metadata["category"], strict=True))
    for c in set(cats.values()):
        ids = {i for i, v in cats.items() if v == c}
        assert ids & set(split.heldout) and ids & set(split.train), c
    again = split_stimuli(target.stimuli.ids, target.stimuli.metadata["category"], 0.25, 0)
    assert again.heldout == split.heldout  # seeded


def test_the_alignment_loss_holds_and_accepts_training_stimuli_only():
    target = BrainTarget.load("kriegeskorte92.human_IT")
    loss = target.loss("rsa", {"compare": "pearson"})
    assert set(loss.target.stimulus_ids) == set(target.split.train)  # no held-out data inside
    feats = {"l": torch.randn(4, 5, dtype=torch.float64)}
    with pytest.raises(HeldOutLeakError, match="held-out"):
        loss(feats, list(target.split.train[:3]) + [target.split.heldout[0]])
    assert torch.isfinite(loss(feats, list(target.split.train[:4])))


def test_a_training_run_never_passes_a_held_out_stimulus(tmp_path, monkeypatch):
    seen: list[str] = []
    original = AlignmentLoss.__call__

    def spy(self, features, ids):
        seen.extend(ids)
        assert all(f.shape[0] == len(ids) for f in features.values())
        return original(self, features, ids)

    monkeypatch.setattr(AlignmentLoss, "__call__", spy)
    result = train_aligned(AlignConfig(out=tmp_path / "run", align_batch=30, **TINY))
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert seen and not set(seen) & set(split["heldout"])
    assert set(seen) <= set(split["train"]) and result.split.heldout == tuple(split["heldout"])


def test_a_run_that_would_train_on_held_out_stimuli_fails(tmp_path, monkeypatch):
    original = _Run.batch

    def leaky(self, step):
        x, y, ids = original(self, step)
        return x, y, ids[:-1] + [self.target.split.heldout[0]]

    monkeypatch.setattr(_Run, "batch", leaky)
    with pytest.raises(HeldOutLeakError):
        train_aligned(AlignConfig(out=tmp_path / "leak", **TINY))


def test_tiny_ann_trains_checkpoints_load_and_rows_are_flagged(tmp_path):
    out = tmp_path / "ann"
    result = train_aligned(AlignConfig(out=out, lam=2.0, **TINY))
    assert result.steps == 3 and np.isfinite(result.final["heldout/stages.1"])
    lo, hi = result.final["heldout/stages.1/ci"]
    assert lo <= result.final["heldout/stages.1"] <= hi
    ckpt = list_checkpoints(out / "checkpoints")[-1]
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    assert meta["training_target"]["target"] == "kriegeskorte92.human_IT"
    assert meta["config"]["lam"] == 2.0 and len(meta["curve"]) == 1
    adapter = load_model("timm:test_convnext2", weights=ckpt, num_classes=10, device="cpu")
    sd = adapter.module.state_dict()
    from safetensors.torch import load_file

    saved = load_file(str(ckpt))
    assert all(torch.equal(sd[k], saved[k]) for k in saved)
    df = run_frame(out)
    align = df[df.metric == "rsa"]
    assert set(align.split) == {"train", "heldout"}
    assert align[align.split == "train"].circular.all()
    assert not align[align.split == "heldout"].circular.any()
    split = result.split
    assert "circular" in circularity(ckpt, "kriegeskorte92.human_IT", split.train[:5])
    assert circularity(ckpt, "kriegeskorte92.human_IT", split.heldout).startswith("held out")
    assert circularity(ckpt, "kriegeskorte92.monkey_IT", split.train) is None
    report = (out / "report.md").read_text()
    assert "Training target" in report and "circular" in report
    assert (out / "curve.png").stat().st_size > 0


def test_tiny_snn_trains_and_its_checkpoint_loads(tmp_path):
    out = tmp_path / "snn"
    result = train_aligned(AlignConfig(out=out, lam=1.0, **SNN))
    assert result.steps == 2 and np.isfinite(result.final["task_loss"])
    assert np.isfinite(result.final["align_loss"])
    # an untrained SNN is silent in eval mode (BN running stats at their init): the point says
    # so instead of failing the run
    held = result.final["heldout/stage3.block0"]
    assert (held is not None and np.isfinite(held)) or any(
        "stage3.block0" in u for u in result.final["unscored"])
    ckpt = list_checkpoints(out / "checkpoints")[-1]
    adapter = load_model("snn:hst_tiny", weights=ckpt, num_classes=10, img_size=16, device="cpu")
    x = torch.randn(2, 3, 16, 16)
    assert adapter.forward_layers(x, ["stage3.block0"])["stage3.block0"].shape[0] == 2


def test_snn_alignment_gradient_reaches_the_weights():
    adapter = load_model("snn:hst_tiny", untrained=True, num_classes=10, img_size=16,
                         device="cpu", bn_calibration="none")
    adapter.module.train()
    feats = adapter.forward_layers(torch.randn(6, 3, 16, 16), ["stage2.block0"], grad=True)
    feats["stage2.block0"].double().sum().backward()
    grads = [p.grad for p in adapter.module.stage1.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_resume_repeats_an_uninterrupted_run(tmp_path, monkeypatch):
    cfg = dict(TINY, steps=4, eval_every=2)
    full = train_aligned(AlignConfig(out=tmp_path / "full", **cfg))
    original = _Run.step

    def crash(self, step):
        if step == 3:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(_Run, "step", crash)
    with pytest.raises(KeyboardInterrupt):
        train_aligned(AlignConfig(out=tmp_path / "cut", **cfg))
    monkeypatch.setattr(_Run, "step", original)
    resumed = train_aligned(AlignConfig(out=tmp_path / "cut", **cfg))
    assert resumed.steps == 4 and len(resumed.curve) == 2
    from safetensors.torch import load_file

    a = load_file(str(list_checkpoints(tmp_path / "full" / "checkpoints")[-1]))
    b = load_file(str(list_checkpoints(tmp_path / "cut" / "checkpoints")[-1]))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    assert full.final["accuracy"] == resumed.final["accuracy"]


def test_cli_trains_and_refuses_a_bad_config(tmp_path):
    import yaml

    from cortexalign.cli import app

    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "out": str(tmp_path / "cli"), "lam": 0.0}))
    res = CliRunner().invoke(app, ["train-aligned", str(cfg), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "held-out alignment stages.1" in res.output
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"out": str(tmp_path / "y"), "objective": "cka",
                                     "objective_options": {"compare": "spearman"}}))
    res = CliRunner().invoke(app, ["train-aligned", str(wrong)])
    assert res.exit_code != 0 and "not options of the cka objective" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"out": str(tmp_path / "x"), "heldout_fraction": 1.5}))
    res = CliRunner().invoke(app, ["train-aligned", str(bad)])
    assert res.exit_code != 0 and "heldout_fraction" in res.output


@pytest.mark.parametrize("objective,options", [("cka", {"kind": "linear"}),
                                               ("ridge", {"n_folds": 3, "inner_folds": 3,
                                                          "alphas": [1.0, 100.0]})])
def test_a_responses_target_trains_with_cka_and_ridge(tmp_path, objective, options):
    from cortexalign.neural import make_responses

    g = np.random.default_rng(0)
    ids = [f"img{k:02d}" for k in range(92)]
    resp = make_responses(g.standard_normal((92, 12, 2)), ids, name="planted")
    path = tmp_path / "planted.nc"
    resp.to_netcdf(path)
    result = train_aligned(AlignConfig(out=tmp_path / objective, target=str(path),
                                       stimuli="kriegeskorte92", objective=objective,
                                       objective_options=options, **dict(TINY, steps=2,
                                                                         eval_every=2)))
    assert np.isfinite(result.final["align_loss"])
    assert result.final["heldout/stages.1"] is not None
    df = run_frame(tmp_path / objective)
    metric = "cka_linear" if objective == "cka" else "ridge"
    assert set(df[df.metric == metric].split) == {"train", "heldout"}
