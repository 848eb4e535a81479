"""The thread policy of cortexalign.compute: its rules, its restoring of both pools, and that the
numbers do not depend on the thread count it picks."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import cortexalign.compute as compute
from cortexalign.compute import SMALL_WORK, compute_threads, gram_work, threads_for
from cortexalign.errors import InputError
from cortexalign.metrics import cka, compare_rdms, compute_rdm, score
from cortexalign.neural import RDMSet


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("CORTEXALIGN_THREADS", raising=False)


def test_small_work_gets_one_thread_whatever_the_ceiling():
    assert threads_for(SMALL_WORK / 2, max_threads=8) == 1
    assert threads_for(0, max_threads=2) == 1


def test_large_work_gets_the_free_cores(monkeypatch):
    monkeypatch.setattr(compute, "_n_cores", lambda: 8)
    monkeypatch.setattr(compute, "_other_load", lambda: 0.0)
    assert threads_for(SMALL_WORK * 10, max_threads=4) == 4     # never above the ceiling
    monkeypatch.setattr(compute, "_other_load", lambda: 6.2)    # 6 cores busy elsewhere
    assert threads_for(SMALL_WORK * 10, max_threads=8) == 2
    monkeypatch.setattr(compute, "_other_load", lambda: 30.0)   # overloaded: still one
    assert threads_for(SMALL_WORK * 10, max_threads=8) == 1


def test_environment_override_and_its_validation(monkeypatch):
    monkeypatch.setenv("CORTEXALIGN_THREADS", "3")
    assert threads_for(1.0) == 3
    monkeypatch.setenv("CORTEXALIGN_THREADS", "zero")
    with pytest.raises(InputError, match="CORTEXALIGN_THREADS"):
        threads_for(1.0)


def test_own_load_is_not_counted_as_other_processes(monkeypatch):
    monkeypatch.setattr(compute.os, "getloadavg", lambda: (1.9, 1.0, 1.0))
    monkeypatch.setattr(compute, "_own_share", lambda: 1.8)  # the load is this process
    monkeypatch.setattr(compute, "_runnable_others", lambda: 0.0)
    assert compute._other_load() == pytest.approx(0.1)


def test_gram_work_counts_s_squared_d():
    assert gram_work(np.zeros((92, 10, 3))) == 92 * 92 * 30
    assert compute.total_gram_work({"a": np.zeros((4, 2))}, [np.zeros((4, 3))], None) == 16 * 5


def test_blas_gets_the_free_cores_at_every_size(monkeypatch):
    """NumPy's BLAS follows the load right now, not the size (rule 4): both cores of a quiet
    machine for a 92-stimulus Gram product, one on a busy machine, and both again in the minute
    after another job ended while the load average still counts it."""
    monkeypatch.setattr(compute, "_n_cores", lambda: 2)
    monkeypatch.setattr(compute, "_runnable_others", lambda: 0.0)
    monkeypatch.setattr(compute, "_other_load", lambda: 1.0)  # the lagging average: a job just ended
    assert threads_for(1.0, max_threads=2, blas=True) == 2
    assert threads_for(1.0, max_threads=2) == 1  # torch's pool: one thread for small work
    monkeypatch.setattr(compute, "_runnable_others", lambda: 2.0)  # two busy processes
    assert threads_for(1.0, max_threads=2, blas=True) == 1


def test_own_share_counts_the_process_from_its_start(monkeypatch):
    """The first sample of this process's share averages over its life: CPU spent before the
    first call (imports, loading) is in the load average too."""
    monkeypatch.setattr(compute, "_own", {})
    monkeypatch.setattr(compute, "_process_age", lambda: 2.0)
    monkeypatch.setattr(compute.time, "process_time", lambda: 1.5)
    assert compute._own_share() == pytest.approx(0.75)
    monkeypatch.undo()
    # the real age (from /proc where there is one) covers at least the time since the import
    assert compute._process_age() >= time.monotonic() - compute._IMPORTED - 0.05


def test_runnable_threads_of_others_are_seen_at_once(monkeypatch):
    monkeypatch.setattr(compute.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(compute, "_runnable_others", lambda: 2.0)  # started a second ago
    assert compute._other_load() == 2.0
    monkeypatch.undo()
    assert compute._runnable_others() >= 0.0  # reads /proc where there is one


def test_context_sets_and_restores_both_pools(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(compute, "_other_load", lambda: 64.0)  # busy: one BLAS thread too
    monkeypatch.setattr(compute, "_runnable_others", lambda: 64.0)
    before = torch.get_num_threads()
    blas = [c for c in threadpoolctl.ThreadpoolController().lib_controllers
            if c.user_api == "blas"]
    blas_before = [c.num_threads for c in blas]
    with compute_threads(1.0) as n:
        assert n == 1 and torch.get_num_threads() == 1
        assert all(c.num_threads == 1 for c in blas)
        with compute_threads(SMALL_WORK * 100) as inner:   # nested: the outer choice holds
            assert inner == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert [c.num_threads for c in blas] == blas_before


def test_restored_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), compute_threads(1.0):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    assert compute._depth == 0


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="needs 2 torch threads to compare paths")
def test_values_do_not_depend_on_the_thread_count(monkeypatch):
    rng = np.random.default_rng(0)
    x_sd, y_sd = rng.standard_normal((120, 300)), rng.standard_normal((120, 40))
    target = RDMSet(np.stack([compute_rdm(rng.standard_normal((120, 20))) for _ in range(3)]),
                    [f"s{i}" for i in range(120)], descriptors={"subject": ["a", "b", "c"]})
    out = {}
    for n in ("1", "2"):
        monkeypatch.setenv("CORTEXALIGN_THREADS", n)
        out[n] = (compute_rdm(x_sd), cka(x_sd, y_sd, kind="linear_debiased"),
                  compare_rdms(compute_rdm(x_sd), compute_rdm(y_sd), "pearson"),
                  score("rsa", x_sd, target, n_bootstrap=20, seed=1).ci_low)
    for a, b in zip(out["1"], out["2"], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_keep_freed_memory_applies_on_glibc_and_defers_to_the_environment(monkeypatch):
    """The command line keeps freed blocks for reuse (compute.keep_freed_memory); MALLOC_*
    environment variables, when set, decide instead."""
    import ctypes

    from cortexalign.compute import keep_freed_memory

    monkeypatch.setenv("MALLOC_TOP_PAD_", "0")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TOP_PAD_")
    try:
        ctypes.CDLL("libc.so.6").mallopt  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("not glibc")
    assert keep_freed_memory() is True
