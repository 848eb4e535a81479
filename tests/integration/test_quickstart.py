"""End to end: the quickstart config on the bundled 92 images (bootstrap reduced for speed)."""

from __future__ import annotations

import numpy as np
import pytest

from cortexalign.bench import load_config, quickstart_config_path
from cortexalign.bench._run import run_experiment
from cortexalign.errors import InputError
from cortexalign.reports import write_summary
from cortexalign.results import ResultsStore


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    cfg = load_config(quickstart_config_path()).model_copy(update={"n_bootstrap": 100})
    out = tmp_path_factory.mktemp("quickstart")
    summary = run_experiment(cfg, out, progress=False)
    write_summary(out, name=cfg.name)  # what `cortexalign quickstart` does after the runner
    store = ResultsStore(out / "results.duckdb", read_only=True)
    frame = store.scores_frame()
    return cfg, out, summary, frame


def test_quickstart_writes_every_score_figure_and_report(quick_run):
    cfg, out, summary, frame = quick_run
    assert summary.ok, summary.failures
    assert summary.n_done == summary.n_jobs == len(frame) > 0
    assert set(frame["target"]) == {"human IT", "monkey IT"}
    assert set(frame["model"]) == {m.display for m in cfg.models}
    for name in ("figure.png", "report.html", "best_layers.csv", "results.duckdb"):
        assert (out / name).stat().st_size > 0
    assert np.isfinite(frame["value"]).all()
    assert (frame["ci_low"] <= frame["value"]).all() and (frame["value"] <= frame["ci_high"]).all()


def test_pretrained_beats_untrained_on_human_it(quick_run):
    _, _, _, frame = quick_run
    human = frame[frame["target"] == "human IT"]
    best = human.groupby("model")["value"].max()
    assert best["EfficientNet-Lite0"] > best["EfficientNet-Lite0 (untrained)"] + 0.05
    # the human IT ceiling comes from 4 subjects: lower bound below upper bound, both positive
    row = human.iloc[0]
    assert 0 < row["ceiling_low"] < row["ceiling_high"] <= 1


def test_rerun_skips_finished_jobs(quick_run):
    cfg, out, summary, frame = quick_run
    again = run_experiment(cfg, out, progress=False)
    assert again.n_done == 0 and again.n_skipped == summary.n_jobs
    store = ResultsStore(out / "results.duckdb", read_only=True)
    assert len(store.scores_frame()) == len(frame)


def test_other_config_in_same_directory_is_refused(quick_run):
    cfg, out, _, frame = quick_run
    other = cfg.model_copy(update={"n_bootstrap": 7})
    before = (out / "results.duckdb").read_bytes()
    with pytest.raises(InputError, match="--update"):
        run_experiment(other, out, progress=False)
    assert (out / "results.duckdb").read_bytes() == before


def test_mismatched_stimulus_ids_stop_before_writing(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "stim.npz", images=rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8),
             stimulus_ids=np.array([f"s{i}" for i in range(5)]))
    x = rng.normal(size=(5, 3))
    rdm = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.savez(tmp_path / "rdm.npz", rdms=rdm, stimulus_ids=np.array(["s0", "s1", "s2", "s3", "blank"]))
    cfg = load_config({"stimuli": {"source": str(tmp_path / "stim.npz")},
                       "models": [{"name": "gabor_v1"}],
                       "neural": [{"source": str(tmp_path / "rdm.npz")}],
                       "metrics": [{"name": "rsa"}]})
    out = tmp_path / "out"
    with pytest.raises(InputError, match="'blank'"):
        run_experiment(cfg, out, progress=False)
    assert not out.exists()
