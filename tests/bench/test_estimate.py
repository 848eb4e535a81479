"""`cortexalign run --estimate`: the predictor's formula against the shipped fits (nothing timed),
the sizes it reads from a config, and the table it prints without running anything."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from cortexalign.bench import _estimate as est  # the formula's parts, tested one by one
from cortexalign.bench import quickstart_config_path
from cortexalign.cli import app

FAMILIES = ("rsa", "cka", "ridge")


def _law(at, **pairs):  # pairs: axis -> (base, exponent)
    return {"at": at, "base": {a: b for a, (b, _) in pairs.items()},
            "exponents": {a: e for a, (_, e) in pairs.items()}}


SYNTHETIC = {
    "measured": {"cpu": "test", "threads": 1, "load_average": [0.5, 0.5, 0.5]},
    "measures": {f: {"time": _law(2.0, stimuli=(100, 2.0), features=(1000, 1.0),
                                  neuroids=(10, 0.5)),
                     "memory": _law(1e6, stimuli=(100, 2.0), features=(1000, 1.0),
                                    neuroids=(10, 0.0)),
                     "resample": _law(0.01, stimuli=(100, 2.0))} for f in FAMILIES},
    "extraction": {"time": _law(0.1, flops=(1e9, 1.0)),
                   "activation_memory": _law(1e6, flops=(1e9, 1.0)),
                   "time_by_parameters": _law(0.2, parameters=(1e7, 1.0)),
                   "activation_memory_by_parameters": _law(2e6, parameters=(1e7, 1.0))},
    "runner": {"seconds_per_job": 0.003},
}


def test_the_shipped_fits_have_every_part_with_finite_numbers():
    fits = est.load_fits()
    assert set(fits["measures"]) == set(FAMILIES)
    laws = list(fits["extraction"].values())
    assert set(fits["extraction"]) == {"time", "activation_memory", "time_by_parameters",
                                       "activation_memory_by_parameters"}
    for f in FAMILIES:
        m = fits["measures"][f]
        assert set(m["time"]["exponents"]) == {"stimuli", "features", "neuroids"}
        assert set(m["resample"]["exponents"]) == {"stimuli"}
        laws += [m["time"], m["memory"], m["resample"]]
    for law in laws:
        assert law["at"] > 0 and all(math.isfinite(e) for e in law["exponents"].values())
    assert fits["runner"]["seconds_per_job"] >= 0
    assert fits["measured"]["load_average"] and fits["measured"]["threads"] >= 1


@pytest.mark.parametrize("metric,family", [("rsa", "rsa"), ("cka_linear_debiased", "cka"),
                                           ("ridge", "ridge"), ("pls", "ridge"),
                                           ("map_pearson", "rsa")])
def test_a_job_is_the_shipped_power_law_by_hand(metric, family):
    fits = est.load_fits()
    m = fits["measures"][family]
    s, d, n, b = 500, 3000, 250, 1000
    job = est.JobSize(metric, s, d, n, b)

    def law(fit, sizes):
        return fit["at"] * math.prod((sizes[a] / fit["base"][a]) ** e
                                     for a, e in fit["exponents"].items())

    sizes = {"stimuli": s, "features": d, "neuroids": n}
    want_t = (law(m["time"], sizes) + b * law(m["resample"], {"stimuli": s})
              + fits["runner"]["seconds_per_job"])
    seconds, nbytes = est.predict_job(fits, job)
    assert seconds == pytest.approx(want_t, rel=1e-12)
    assert nbytes == pytest.approx(law(m["memory"], sizes), rel=1e-12)


def test_power_laws_scale_as_their_exponents_say():
    fits = SYNTHETIC
    t1, m1 = est.predict_job(fits, est.JobSize("rsa", 100, 1000, 10, 0))
    assert (t1, m1) == (pytest.approx(2.003), pytest.approx(1e6))
    t2, m2 = est.predict_job(fits, est.JobSize("rsa", 200, 1000, 40, 0))
    assert t2 == pytest.approx(2.0 * 4 * 2 + 0.003) and m2 == pytest.approx(4e6)
    t3, _ = est.predict_job(fits, est.JobSize("cka_rbf", 100, 1000, None, 100))  # RDM target
    assert t3 == pytest.approx(2.0 + 100 * 0.01 + 0.003)
    # by FLOPs when counted: s x E(f), weights + batch x A(f); by parameters otherwise
    assert est.predict_extraction(fits, int(2e7), int(2e9), 50, 32) == (
        pytest.approx(10.0), pytest.approx(8e7 + 32 * 2e6))
    assert est.predict_extraction(fits, int(2e7), 0, 50, 32) == (
        pytest.approx(20.0), pytest.approx(8e7 + 32 * 4e6))
    assert est.predict_extraction(fits, int(2e7), 0, 5, 32)[1] == pytest.approx(8e7 + 5 * 4e6)


def test_a_run_is_the_sum_of_its_models_and_jobs_and_the_peak_their_largest():
    models = [est.ModelEstimate("a", int(1e7), {"l1": 1000, "l2": 2000}, flops=int(1e9)),
              est.ModelEstimate("b", int(4e7), {"l1": 500})]  # FLOPs not counted
    run = est.estimate_run(SYNTHETIC, models, 100, {"IT": [10], "V4": [10, 40]}, ["rsa", "ridge"],
                           0)
    a, b = run.models
    assert (a.n_jobs, b.n_jobs) == (2 * 2 * 2, 1 * 2 * 2)  # a split target is one job
    job = lambda d, n: est.predict_job(SYNTHETIC, est.JobSize("rsa", 100, d, n, 0))[0]  # noqa: E731
    per_layer = lambda d: 2 * (job(d, 10) + job(d, 10) + job(d, 40))  # noqa: E731
    assert a.score_s == pytest.approx(per_layer(1000) + per_layer(2000))
    assert a.extract_s == pytest.approx(100 * 0.1) and b.extract_s == pytest.approx(100 * 0.8)
    assert run.seconds == pytest.approx(a.extract_s + a.score_s + b.extract_s + b.score_s)
    peak_a = 4e7 + 32 * 1e6 + 4 * 100 * 3000 + est.predict_job(SYNTHETIC, est.JobSize(
        "rsa", 100, 2000, 40, 0))[1]
    assert a.peak_bytes == pytest.approx(peak_a)
    assert run.peak_bytes == max(a.peak_bytes, b.peak_bytes)


def test_widths_come_from_the_architecture_without_weights():

    from cortexalign.models import load_model

    sizes = est.architecture_sizes("efficientnet_lite0", {}, ["blocks.0", "bn2", "logits"])
    assert sizes.widths == {"blocks.0": 16, "bn2": 1280, "logits": 1000} and not sizes.assumed
    real = load_model("efficientnet_lite0", untrained=True, device="cpu").module
    assert sizes.parameters == sum(p.numel() for p in real.parameters())
    assert 0.7e9 < sizes.flops < 0.85e9  # 2 x 0.39 GMAC (torch's counter: 2 FLOPs a MAC)
    grid = est.architecture_sizes("gabor_v1", {}, ["simple"], "grid4")
    assert grid.widths == {"simple": 64 * 16}
    assert est.architecture_sizes("efficientnet_lite0", {}, ["blocks.0", "nope"]).assumed


def test_estimate_prints_a_table_for_a_shipped_config_and_runs_nothing(tmp_path, monkeypatch):
    import cortexalign.bench as bench

    monkeypatch.setattr(bench, "run_experiment", lambda *a, **k: pytest.fail("it ran"))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["run", str(quickstart_config_path()), "--estimate"],
                             env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(x) for x in lines) <= 80
    text = res.output
    for label in ("EfficientNet-Lite0", "Gabor V1", "total", "jobs", "peak mem", "92 stimuli"):
        assert label in text
    total = next(x for x in lines if x.strip("│ ").startswith("total"))
    assert " 20 " in total and " 40 " in total  # 9 + 9 + 2 layers; x 2 targets x 1 metric
    assert "load" in text and list(tmp_path.iterdir()) == []


def test_run_without_out_or_estimate_names_the_option():
    res = CliRunner().invoke(app, ["run", str(quickstart_config_path())])
    assert res.exit_code != 0 and "--out" in res.output and "--estimate" in res.output
