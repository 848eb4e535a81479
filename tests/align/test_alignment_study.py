"""The alignment_training study on a tiny plan: the grid, the paired tests, the report."""

from __future__ import annotations

import numpy as np
import pytest

from cortexalign.errors import InputError
from cortexalign.studies import get_study
from cortexalign.studies.alignment_training import run_plan
from cortexalign.studies.alignment_training._analysis import RunOutcome, paired_rows
from cortexalign.studies.alignment_training._plan import StudyPlan, plan_for, task_data_path


def test_tiny_grid_writes_the_lambda_curve_and_the_paired_tests(tmp_path):
    plan = StudyPlan(lams=(0.0, 2.0), seeds=(0, 1), steps=2, batch_size=8, max_task_train=40,
                     max_task_test=20, eval_every=2, n_bootstrap=50, layer="stages.1")
    result = run_plan(plan, None, tmp_path / "study", device="cpu", progress=False)
    report = result.files["report"].read_text()
    assert "## The lambda curve" in report and "Paired tests" in report
    assert "lambda = 2" in result.summary and "circular" in report
    for key in ("lambda_curve", "tradeoff", "results"):
        assert result.files[key].stat().st_size > 0
    assert (tmp_path / "study" / "runs" / "lam2_seed1" / "report.md").is_file()


def _outcome(lam, seed, heldout, acc, samples):
    return RunOutcome(lam, seed, heldout, np.asarray(samples, float), (0, 0), (0.3, 0.5), 0.5,
                      acc, f"m{lam}{seed}")


def test_paired_rows_pair_by_seed_and_use_shared_resamples():
    outs = [_outcome(0.0, s, 0.1 + 0.01 * s, 0.8, [0.1, 0.2, 0.3]) for s in range(3)]
    outs += [_outcome(1.0, s, 0.2 + 0.01 * s, 0.7, [0.2, 0.3, 0.4]) for s in range(3)]
    (row,) = paired_rows(outs)
    gain, lost = row["alignment_gained"], row["accuracy_lost"]
    np.testing.assert_allclose(gain["per_seed"], [0.1, 0.1, 0.1])
    np.testing.assert_allclose(lost["per_seed"], [0.1, 0.1, 0.1])
    assert gain["stimulus_ci"] == pytest.approx((0.1, 0.1))
    assert gain["stimulus_p"] == 0.0
    # three seeds, all positive: the exact sign-flip p is 2 / 2**3
    assert gain["sign_flip_p"] == pytest.approx(0.25, abs=0.03)


def test_plans_and_data_paths(tmp_path):
    assert get_study("alignment_training").needs_data is False
    cpu = plan_for("cpu")
    assert 0.0 in cpu.lams and len(cpu.lams) >= 3 and len(cpu.seeds) >= 3
    with pytest.raises(InputError, match="subset"):
        plan_for("gpu")
    assert task_data_path(None) is None
    with pytest.raises(InputError, match="--data"):
        task_data_path(tmp_path)
    npz = tmp_path / "cifar10_subset" / "cifar10_subset.npz"
    npz.parent.mkdir()
    npz.write_bytes(b"")
    assert task_data_path(tmp_path) == npz
