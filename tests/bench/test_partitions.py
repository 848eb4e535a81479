"""partitions: in an experiment config — variance partitioning and banded ridge over the cached
features of two Gabor models, against a target planted in one of them. The stored rows equal a
direct call on the same cached features, a killed run resumes without recomputing, bad entries
fail at load (or before anything is written), and version-1 stores open and migrate."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from cortexalign.bench import load_config
from cortexalign.bench._config import EXECUTION_FIELDS
from cortexalign.bench._partition_memory import partition_bytes
from cortexalign.bench._partition_spec import PARTITION_METHODS
from cortexalign.bench._partitions import PartitionJob
from cortexalign.bench._run import run_experiment
from cortexalign.errors import CortexAlignError, InputError
from cortexalign.features import FeatureCache, extract_features
from cortexalign.metrics import banded_ridge, variance_partitioning
from cortexalign.models import load_model
from cortexalign.neural import load_neural
from cortexalign.reports import write_report
from cortexalign.results import SCHEMA_VERSION, ResultsStore
from cortexalign.stimuli import load_stimuli

KW = {"image_size": 48, "image_deg": None}
LOW = {"name": "gabor_v1", "label": "low", "pooling": "grid2", "layers": ["complex"],
       "kwargs": {**KW, "frequencies": [0.06]}}
HIGH = {"name": "gabor_v1", "label": "high", "pooling": "grid2", "layers": ["complex"],
        "kwargs": {**KW, "frequencies": [0.25]}}
SETS = {"low": {"model": "low", "layer": "complex"}, "high": {"model": "high", "layer": "complex"}}
VPA_OPTIONS = {"n_folds": 3, "alphas": [0.1, 10.0, 1000.0], "inner_folds": 3}
BANDED_OPTIONS = {"n_folds": 3, "alphas": [0.1, 10.0, 1000.0], "n_iter": 4, "inner_folds": 3}
PARTITIONS = [
    {"name": "vpa", "method": "variance_partitioning", "sets": SETS, "options": VPA_OPTIONS},
    {"name": "band", "method": "banded_ridge", "sets": SETS, "targets": ["planted"],
     "options": BANDED_OPTIONS},
]


def _features(cache: FeatureCache | None = None) -> dict[str, np.ndarray]:
    """The sets' (92, d) features as the runner extracts them (through ``cache`` when given)."""
    stimuli = load_stimuli("kriegeskorte92")
    out = {}
    for spec in (LOW, HIGH):
        adapter = load_model("gabor_v1", device="cpu", **spec["kwargs"])
        f = extract_features(adapter, stimuli, ["complex"], pooling="grid2", cache=cache,
                             progress=False)["complex"]
        out[spec["label"]] = f
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> str:
    """8 neuroids driven by the low-frequency model alone, plus noise."""
    feats = {k: f.values for k, f in _features().items()}
    rng = np.random.default_rng(0)
    low = feats["low"] - feats["low"].mean(0)
    y_sn = low @ rng.normal(size=(low.shape[1], 8))
    y_sn = y_sn / y_sn.std(0) + 0.5 * rng.normal(size=y_sn.shape)
    path = tmp_path_factory.mktemp("neural") / "planted.npz"
    np.savez(path, responses=y_sn, stimulus_ids=np.array(load_stimuli("kriegeskorte92").ids))
    return str(path)


def _config(planted: str, partitions=PARTITIONS, **extra) -> dict:
    return {"name": "partitions", "stimuli": {"source": "kriegeskorte92"}, "models": [LOW, HIGH],
            "neural": [{"source": planted, "label": "planted"},
                       {"source": "kriegeskorte92.human_IT"}],
            "metrics": [{"name": "rsa"}], "n_bootstrap": 0, "batch_size": 46, "seed": 3,
            "partitions": partitions, **extra}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, planted):
    out = tmp_path_factory.mktemp("run") / "out"
    summary = run_experiment(load_config(_config(planted)), out, progress=False)
    return out, summary


def test_jobs_run_after_the_per_layer_jobs_and_skip_rdm_targets(finished):
    out, summary = finished
    # 2 models x 1 layer x 2 targets x rsa, + vpa (planted; human_IT holds RDMs) + band
    assert summary.ok and summary.n_jobs == summary.n_done == 6
    html = write_report(out).read_text()  # the command line writes it from the store
    assert 'id="partitions"' in html and html.count('class="total"') == 2  # vpa, band: 1 target
    assert "Nunez-Elizalde" in html and "Lescroart" in html  # the methods' citations


@pytest.mark.parametrize("name", ["vpa", "band"])
def test_stored_rows_equal_a_direct_call_on_the_cached_features(finished, planted, name):
    out, _ = finished
    feats = _features(FeatureCache(out / "cache"))
    assert all(f.from_cache for f in feats.values())  # the run cached both sets
    target = load_neural(planted)
    spec = next(p for p in PARTITIONS if p["name"] == name)
    fn = PARTITION_METHODS[spec["method"]]
    result = fn.fn({k: f.values for k, f in feats.items()}, target, seed=3, device="cpu",
                   **spec["options"])
    rows = ResultsStore(out / "results.duckdb", read_only=True).partitions_frame(partition=name)
    want = {(kind, key): v for kind, key, v in fn.quantities(result)}
    assert set(zip(rows["kind"], rows["name"], strict=True)) == set(want)
    for r in rows.itertuples():
        values = np.array(json.loads(r.neuroid_values), dtype=float)
        np.testing.assert_allclose(values, want[(r.kind, r.name)], rtol=0, atol=1e-8)
        assert r.value == pytest.approx(float(np.median(want[(r.kind, r.name)])), abs=1e-8)
        assert json.loads(r.neuroid_ids) == list(result.neuroid_ids)
        assert r.target == "planted" and r.n_stimuli == 92 and r.n_neuroids == 8
        assert json.loads(r.extra)["sets"]["low"]["model"] == "low"


def test_the_planted_set_explains_what_it_explains_alone(finished):
    out, _ = finished
    rows = ResultsStore(out / "results.duckdb", read_only=True).partitions_frame(kind="component")
    value = dict(zip(rows["partition"] + "/" + rows["name"], rows["value"], strict=True))
    assert value["vpa/unique:low"] > 0.1 > abs(value["vpa/unique:high"])
    assert value["band/split:low"] > 0.5 > value["band/split:high"]


def test_cli_results_shows_and_exports_the_partitions(finished, tmp_path):
    from typer.testing import CliRunner

    from cortexalign.cli import app

    out, _ = finished
    shown = CliRunner().invoke(app, ["results", str(out), "--partitions"])
    assert shown.exit_code == 0, shown.output
    for text in ("partition", "unique:", "shared:", "split:", "intercept"):  # rich may wrap cells
        assert text in shown.output, text
    csv = tmp_path / "p.csv"
    done = CliRunner().invoke(app, ["results", str(out), "--partitions", "--export", str(csv)])
    assert done.exit_code == 0, done.output
    stored = ResultsStore(out / "results.duckdb", read_only=True).partitions_frame()
    exported = pd.read_csv(csv)
    assert len(exported) == len(stored) and set(exported["name"]) == set(stored["name"])
    np.testing.assert_allclose(exported["value"], stored["value"], rtol=1e-12)


def test_named_functions_are_the_library_functions():
    assert PARTITION_METHODS["variance_partitioning"].fn is variance_partitioning
    assert PARTITION_METHODS["banded_ridge"].fn is banded_ridge


def test_a_rerun_skips_and_a_killed_run_resumes_without_recomputing(tmp_path, planted,
                                                                      monkeypatch):
    calls = []
    real = PARTITION_METHODS["banded_ridge"]
    def counted(features, target, **options):  # the config checks' dry runs have 24 stimuli
        if target.sizes["stimulus"] == 92:
            calls.append(1)
        return real.fn(features, target, **options)

    counted = functools.wraps(real.fn)(counted)
    monkeypatch.setitem(PARTITION_METHODS, "banded_ridge", dataclasses.replace(real, fn=counted))
    done = []

    def kill_after_first_partition(job):
        if isinstance(job, PartitionJob):
            done.append(job.key)
            raise KeyboardInterrupt

    cfg = load_config(_config(planted))
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path, progress=False, on_job_done=kill_after_first_partition)
    # a job is reported once its writes are committed: vpa is in the store; band (fast jobs
    # are committed in batches) may have been committed with it, or not started at all
    stored = ResultsStore(tmp_path / "results.duckdb", read_only=True).finished_jobs()
    n_band = len(calls)
    assert len(done) == 1 and done[0] in stored and n_band in (0, 1)
    assert len(stored) == 5 + n_band  # the 4 rsa jobs, vpa, and band if it ran
    again = run_experiment(cfg, tmp_path, progress=False)
    assert again.ok and again.n_done == 1 - n_band and again.n_skipped == 5 + n_band
    assert len(calls) == 1  # band computed once, in whichever run
    third = run_experiment(cfg, tmp_path, progress=False)
    assert third.n_done == 0 and third.n_skipped == 6 and len(calls) == 1
    rows = ResultsStore(tmp_path / "results.duckdb", read_only=True).partitions_frame()
    assert rows.groupby("job_key").size().nunique() == 2  # 6 vpa rows, 5 band rows: once each
    assert len(rows) == 11


def _entry(**change) -> list[dict]:
    return [{**PARTITIONS[0], **change}]


BAD = {
    "unknown model": (_entry(sets={**SETS, "high": {"model": "hihg", "layer": "complex"}}),
                      "partitions[0] (vpa).sets.high.model", "did you mean 'high'"),
    "unlisted layer": (_entry(sets={**SETS, "low": {"model": "low", "layer": "complexx"}}),
                       "partitions[0] (vpa).sets.low.layer", "did you mean 'complex'"),
    "one set": (_entry(sets={"low": SETS["low"]}), "partitions[0] (vpa).sets", "2 to 3"),
    "four sets": (_entry(sets={**SETS, "c": SETS["low"], "d": SETS["high"]}),
                  "partitions[0] (vpa).sets", "use method: banded_ridge"),
    "reserved label": (_entry(sets={"lo+w": SETS["low"], "high": SETS["high"]}),
                       "partitions[0] (vpa).sets", "'lo+w'"),
    "unknown method": (_entry(method="variance_partition"), "partitions[0] (vpa).method",
                       "did you mean 'variance_partitioning'"),
    "unknown option": (_entry(options={"n_fold": 3}), "partitions[0] (vpa).options",
                       "did you mean 'n_folds'"),
    "run option": (_entry(options={"seed": 1}), "partitions[0] (vpa).options",
                   "top of the config"),
    "bad scaling": (_entry(options={"scaling": "zscor"}), "partitions[0] (vpa).options",
                    "zscore_balanced"),
    "bad alphas": (_entry(options={"alphas": [-1.0]}), "partitions[0] (vpa).options.alphas",
                   "penalties > 0"),
    "bad n_iter": ([{**PARTITIONS[1], "options": {"n_iter": 0}}],
                   "partitions[0] (band).options.n_iter", "positive int"),
    "unknown target": (_entry(targets=["plantd"]), "partitions[0] (vpa).targets",
                       "did you mean 'planted'"),
    "same name": ([PARTITIONS[0], {**PARTITIONS[1], "name": "vpa"}], "partitions[1].name",
                  "distinct name"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_entries_fail_at_load_naming_the_key(planted, case):
    partitions, where, fix = BAD[case]
    with pytest.raises(InputError) as err:
        load_config(_config(planted, partitions))
    assert err.value.parameter == where and fix in str(err.value)


@pytest.mark.parametrize("change, where", [
    ({"targets": ["kriegeskorte92.human_IT"]}, "partitions[0] (vpa).targets"),
    ({"options": {"n_folds": 93}}, "partitions[0] (vpa).options.n_folds"),
])
def test_what_needs_the_data_fails_before_anything_is_written(tmp_path, planted, change, where):
    cfg = load_config(_config(planted, _entry(**change)))
    with pytest.raises(CortexAlignError) as err:
        run_experiment(cfg, tmp_path / "out", progress=False)
    assert err.value.parameter == where
    assert not (tmp_path / "out").exists()


def test_a_config_without_partitions_keeps_its_hash(planted):
    cfg = _config(planted)
    del cfg["partitions"]
    plain = load_config(cfg)
    # the formula before the key existed: every field but the execution ones
    dump = plain.model_dump(mode="json", exclude=EXECUTION_FIELDS | {
        "partitions", "patterns", "discriminability", "segmentation"})  # added since, unset
    for m in dump["models"]:
        m.pop("preprocess")
    for n in dump["neural"]:
        n.pop("ceiling")
        for key in ("cluster_centres", "embedding"):
            (n.get("select") or {}).pop(key, None)
    dump["batch_size"] = dump["batch_size"] or 32  # the default before it was chosen by memory
    before = json.dumps(dump, sort_keys=True).encode()
    assert plain.config_hash() == hashlib.sha256(before).hexdigest()[:16]
    assert plain.config_hash() == load_config({**cfg, "partitions": []}).config_hash()
    assert plain.config_hash() != load_config(_config(planted)).config_hash()


def _as_version_1(path) -> None:
    with duckdb.connect(str(path)) as con:
        for table in ("partitions", "second_order", "notes", "q_values", "comparisons"):  # v2-4
            con.execute(f"DROP TABLE {table}")
        con.execute("UPDATE schema_version SET version = 1")


def test_a_version_1_store_reads_and_migrates_on_write(tmp_path):
    path = tmp_path / "results.duckdb"
    ResultsStore(path).start_run("name: old\n")
    _as_version_1(path)
    old = ResultsStore(path, read_only=True)  # readers accept it as it is
    assert old.partitions_frame().empty and old.frame("partitions").empty
    assert len(old.frame("runs")) == 1
    exported = pd.read_csv(old.export(tmp_path / "partitions.csv", table="partitions"))
    assert exported.empty and list(exported.columns) == list(old.partitions_frame().columns)
    ResultsStore(path)  # a writer migrates it
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert ResultsStore(path, read_only=True).partitions_frame().empty
    assert len(ResultsStore(path, read_only=True).frame("runs")) == 1


# -- max_feature_memory_gb ---------------------------------------------------------------------
def test_the_estimate_is_the_sets_in_float64_plus_the_methods_working_memory():
    s, widths = 92, [30, 50]
    inputs = s * 80 * 8
    assert partition_bytes("variance_partitioning", s, widths) == inputs + 8 * (s * 80
                                                                                 + 2 * s * s)
    assert partition_bytes("banded_ridge", s, widths) == inputs + 8 * (s * 80 + 4 * s * s)


def _budget_between_vpa_and_band() -> tuple[float, int]:
    """A budget (GB) that the vpa partition fits and band (more working memory) does not, and
    band's estimate in bytes; widths as the runner extracts the sets."""
    widths = [f.values.shape[1] for f in _features().values()]
    vpa = partition_bytes("variance_partitioning", 92, widths)
    band = partition_bytes("banded_ridge", 92, widths)
    assert vpa < band
    return (vpa + band) / 2e9, band


def test_a_partition_over_the_budget_fails_at_validation(tmp_path, planted):
    budget, band = _budget_between_vpa_and_band()
    cfg = load_config(_config(planted, max_feature_memory_gb=budget))
    with pytest.raises(InputError) as err:
        run_experiment(cfg, tmp_path / "out", progress=False)
    assert err.value.parameter == "partitions[1] (band)"
    assert f"{band / 1e9:.3g} GB" in err.value.received and "low 92 x" in err.value.received
    assert f"max_feature_memory_gb ({budget:g} GB)" in err.value.expected
    assert "grid2 or mean" in err.value.fix and f"above {band / 1e9:.3g}" in err.value.fix
    assert not (tmp_path / "out").exists()


def test_a_partition_job_over_the_budget_fails_before_reading_its_sets(tmp_path, planted,
                                                                      monkeypatch):
    from cortexalign.bench import _partitions

    monkeypatch.setattr(_partitions, "check_partition_memory", lambda *args: {})  # job time
    budget, band = _budget_between_vpa_and_band()
    asked = []
    real = _partitions._set_features
    monkeypatch.setattr(_partitions, "_set_features",
                        lambda cfg, needed, *args: asked.append(needed) or real(cfg, needed,
                                                                                *args))
    summary = run_experiment(load_config(_config(planted, max_feature_memory_gb=budget)),
                             tmp_path, progress=False)
    assert (summary.n_jobs, summary.n_done) == (6, 5)  # 4 rsa jobs and vpa
    assert [f["job"] for f in summary.failures] == ["partition band (banded_ridge) / planted"]
    error = summary.failures[0]["error"]
    assert error.startswith("InputError") and "partitions[1] (band)" in error
    assert f"{band / 1e9:.3g} GB" in error and "max_feature_memory_gb" in error
    rows = ResultsStore(tmp_path / "results.duckdb", read_only=True).partitions_frame()
    assert set(rows["partition"]) == {"vpa"}
    assert asked == [{"low": ["complex"], "high": ["complex"]}]  # vpa's sets
    # band alone: its job fails and no set is read for it
    asked.clear()
    alone = run_experiment(load_config(_config(planted, [PARTITIONS[1]],
                                               max_feature_memory_gb=budget)),
                           tmp_path / "alone", progress=False)
    assert (alone.n_jobs, alone.n_done, len(alone.failures)) == (5, 4, 1) and asked == [{}]


def test_a_gpu_worker_s_bf16_entry_is_what_the_driver_reads(tmp_path):
    from cortexalign.bench._partitions import _by_cached_precision

    stimuli = load_stimuli("kriegeskorte92")
    adapter = load_model("gabor_v1", device="cpu", **LOW["kwargs"])
    cache = FeatureCache(tmp_path)
    assert _by_cached_precision(adapter, stimuli, ["complex"], "grid2", cache) == {
        "auto": ["complex"]}  # nothing cached: extract with the driver's own precision
    extract_features(adapter, stimuli, ["complex"], pooling="grid2", cache=cache,
                     precision="bf16", progress=False)  # what 'auto' stores on a GPU
    assert _by_cached_precision(adapter, stimuli, ["complex"], "grid2", cache) == {
        "bf16": ["complex"]}
