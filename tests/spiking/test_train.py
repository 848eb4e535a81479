"""Training loop: resume equality, NaN stop, checkpoint mismatch, evaluation, CLI."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cortexalign.cli.spiking import app
from cortexalign.errors import InputError
from cortexalign.spiking import train as train_mod
from cortexalign.spiking._checkpoint import list_checkpoints, load_weights
from cortexalign.spiking.models import create_snn
from cortexalign.spiking.train import TrainConfig, evaluate_snn, train_snn

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture
def npz(toy_npz):
    return toy_npz(24)


def _cfg(npz, ckdir, **kw):
    base = dict(data=npz, checkpoint_dir=ckdir, model="hst_tiny", batch_size=8, epochs=2,
                progress=False, lr=3e-3)
    return TrainConfig(**{**base, **kw})


def test_train_then_resume_equals_uninterrupted(npz, tmp_path):
    full = train_snn(_cfg(npz, tmp_path / "a", max_steps=4))
    train_snn(_cfg(npz, tmp_path / "b", max_steps=4, checkpoint_every=1, keep_last=10))
    for ck in list_checkpoints(tmp_path / "b")[2:]:  # as if the run had been killed after step 2
        ck.with_suffix(".json").unlink()
    (tmp_path / "b" / "metrics.jsonl").unlink()
    assert list_checkpoints(tmp_path / "b")[-1].name == "ckpt_0000002.safetensors"
    resumed = train_snn(_cfg(npz, tmp_path / "b", max_steps=4))
    assert full.steps == resumed.steps == 4
    wa, wb = load_file(str(full.last_checkpoint)), load_file(str(resumed.last_checkpoint))
    assert wa.keys() == wb.keys() and any(k.startswith("optim.") for k in wa)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=0)
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"test_acc"' in lines[0]
    assert len(list_checkpoints(tmp_path / "a")) <= 3


def test_training_is_recorded_in_the_results_store(npz, tmp_path):
    """Curves per epoch as they end, then firing rates and energy of the trained model (equal
    to measuring the saved checkpoint independently); a resumed training writes each epoch once."""
    from cortexalign.results import RESULTS_FILE, ResultsStore
    from cortexalign.spiking import measure_energy
    from cortexalign.spiking._checkpoint import model_from_checkpoint
    from cortexalign.spiking._data import load_image_data, to_input

    res = train_snn(_cfg(npz, tmp_path / "a", energy_images=4, results_dir=tmp_path / "r"))
    store = ResultsStore(tmp_path / "r" / RESULTS_FILE, read_only=True)
    assert store.finished_jobs() == {res.job_key} and res.job_key.startswith("snn_train:")
    assert store.frame("runs")["status"].tolist() == ["finished"]
    rows = store.training_frame(job_key=res.job_key)
    epochs = rows[rows["kind"] == "epoch"].pivot(index="epoch", columns="name", values="value")
    assert list(epochs.index) == [1, 2]
    for row in res.epochs:
        for name in ("train_loss", "train_acc", "test_acc"):
            assert epochs.loc[row["epoch"], name] == pytest.approx(row[name], abs=1e-12)
    x = to_input(torch.from_numpy(load_image_data(npz).test_x[:4]))
    model = model_from_checkpoint(res.last_checkpoint).eval()
    want = measure_energy(model, x)
    energy = rows[rows["kind"] == "energy"].set_index("name")["value"]
    assert energy["energy_mj"] == pytest.approx(want.energy_mj, rel=1e-9) and energy["sops"] > 0
    rates = rows[rows["kind"] == "firing_rate"].set_index("name")["value"]
    assert rates.to_dict() == pytest.approx(want.firing_rates, rel=1e-9)
    assert len(rates) > 0 and ((rates >= 0) & (rates <= 1)).all()
    # as if killed at step 4 (in epoch 2, after its rows were written): the resumed training
    # replaces epoch 2's rows, keeps epoch 1's, and finds its job already finished
    ck = tmp_path / "b"
    cfg = _cfg(npz, ck, checkpoint_every=1, keep_last=10, energy_images=0)
    train_snn(cfg)
    for old in list_checkpoints(ck)[4:]:
        old.with_suffix(".json").unlink()
    resumed = train_snn(cfg)
    again = ResultsStore(ck / RESULTS_FILE, read_only=True)
    assert list(again.training_frame(kind="epoch").groupby("epoch").size()) == [5, 5]
    assert sorted(again.frame("jobs")["status"]) == ["duplicate", "finished"]
    assert resumed.steps == 6 and [r.kind for r in resumed.records] == ["result"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(npz, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = create_snn

    def flaky(name, **kw):
        model = real(name, **kw)
        orig = model.loss

        def loss(x, y):
            calls["n"] += 1
            value, logits = orig(x, y)
            return (value * float("nan"), logits) if calls["n"] == 3 else (value, logits)
        model.loss = loss
        return model

    monkeypatch.setattr(train_mod, "create_snn", flaky)
    res = train_snn(_cfg(npz, tmp_path / "c", checkpoint_every=1))
    assert res.stopped_at_step == 3 and "non-finite" in res.stop_reason
    assert res.last_checkpoint.name == "ckpt_0000002.safetensors" and res.last_checkpoint.is_file()
    assert list_checkpoints(tmp_path / "c")[-1] == res.last_checkpoint
    from cortexalign.results import RESULTS_FILE, ResultsStore

    store = ResultsStore(tmp_path / "c" / RESULTS_FILE, read_only=True)  # the stop is recorded
    job = store.frame("jobs").iloc[0]
    assert job["status"] == "failed" and "non-finite" in job["error"]
    assert store.frame("runs")["status"].tolist() == ["failed"]


def test_checkpoint_of_another_architecture(npz, tmp_path):
    res = train_snn(_cfg(npz, tmp_path / "d", max_steps=1))
    other = create_snn("spiliformer_tiny", num_classes=2)
    with pytest.raises(InputError, match="hst_tiny.*unexpected|hst_tiny.*missing") as err:
        load_weights(other, res.last_checkpoint)
    assert "spiliformer_tiny" in str(err.value)
    acc = evaluate_snn(res.last_checkpoint, npz)
    assert 0.0 <= acc <= 1.0
    with pytest.raises(InputError, match="checkpoint"):
        evaluate_snn(tmp_path / "nope.safetensors", npz)


def test_config_validation(npz, tmp_path):
    with pytest.raises(ValueError, match="Did you mean .hst_tiny"):
        TrainConfig(data=npz, checkpoint_dir=tmp_path, model="hst_tinny")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(data=npz, checkpoint_dir=tmp_path, batch_size=0)
    with pytest.raises(InputError, match="npz"):
        train_snn(_cfg(tmp_path / "missing.npz", tmp_path / "e"))
    assert TrainConfig.model_fields["lr"].description.startswith("AdamW")


def test_cli_train_and_eval(npz, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"data: {npz}\ncheckpoint_dir: {tmp_path / 'f'}\nmodel: tdformer_tiny\n"
                   "batch_size: 8\nmax_steps: 1\nprogress: false\n")
    runner = CliRunner()
    out = runner.invoke(app, ["train-snn", str(cfg)])
    assert out.exit_code == 0, out.output
    ck = list_checkpoints(tmp_path / "f")[-1]
    out = runner.invoke(app, ["eval-snn", str(ck), "--data", str(npz)])
    assert out.exit_code == 0 and "accuracy" in out.output
    cfg.write_text("data: x.npz\nchekpoint_dir: y\n")
    out = runner.invoke(app, ["train-snn", str(cfg)])
    assert out.exit_code == 2 and "error" in out.output


def test_cli_show_config_is_a_complete_valid_config(npz, tmp_path):
    import yaml

    runner = CliRunner()
    out = runner.invoke(app, ["train-snn", "--show-config"])
    assert out.exit_code == 0, out.output
    raw = yaml.safe_load(out.output)
    assert set(raw) == set(TrainConfig.model_fields)  # every field, nothing else
    defaults = TrainConfig(**{**raw, "data": npz, "checkpoint_dir": tmp_path})
    for name, field in TrainConfig.model_fields.items():
        if name not in ("data", "checkpoint_dir"):
            assert getattr(defaults, name) == field.default, name
            assert field.description.splitlines()[0].strip() in out.output
    missing = runner.invoke(app, ["train-snn"])
    assert missing.exit_code == 2 and "--show-config" in missing.output


@pytest.mark.skipif(not (SHARED / "cifar10_subset").is_dir(),
                    reason="../shared/data/cifar10_subset is not present next to the repository")
def test_cifar_subset_loads():
    from cortexalign.spiking._data import load_image_data

    d = load_image_data(SHARED / "cifar10_subset" / "cifar10_subset.npz")
    assert d.train_x.shape == (10000, 32, 32, 3) and d.num_classes == 10
