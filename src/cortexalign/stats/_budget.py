"""How many resamples (bootstrap draws, permutations) a run may ask for, with the memory and time
they would take, checked before any work.

``n_bootstrap: 100000000`` used to die with a raw allocator error (the (B, s) index array alone is
73.6 GB for 92 stimuli) and 2,000,000 ran for more than 7 minutes per job with no word. Now:

- **limit**: at most ``MAX_RESAMPLES`` (100,000) resamples per statistic. Beyond it a percentile
  interval no longer changes in the digits reported (the Monte-Carlo error of a 2.5 % quantile is
  about ``sqrt(q (1 - q) / B)``: 0.0005 in coverage at B = 100,000) and a permutation p-value
  already resolves 1e-5; more only costs time and memory.
- **memory**: the (B, s) int64 stimulus indices plus the chunked working set
  (``WORKING_BYTES``); refused when above half of this machine's physical memory.
- **time**: a rough figure, ``B x p x k x SECONDS_PER_ELEMENT`` for p = s(s-1)/2 pairs and k
  target RDMs (or neuroid groups), measured for the Spearman bootstrap (``score("rsa")``, cold)
  on the 2-core development machine: 1,000 resamples against 8 RDMs took 0.63 s at 92 stimuli,
  9.9 s at 300 and 99 s at 1,000 on quiet cores (2.3 s at 92 with two busy background
  processes; BENCHMARKS.md, eighth session), 1.9-2.5e-8 s per element. GPUs are faster; the
  figure is an order of magnitude, printed so a user can decide.
"""

from __future__ import annotations

import os

from cortexalign.errors import InputError

__all__ = ["MAX_RESAMPLES", "SECONDS_PER_ELEMENT", "WORKING_BYTES", "resample_cost",
           "check_resamples", "physical_memory"]

MAX_RESAMPLES = 100_000
SECONDS_PER_ELEMENT = 3e-8
WORKING_BYTES = 4 * 8 * 2**23  # a few float64 arrays of bootstrap_rdm_comparison's chunk


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def resample_cost(n: int, n_stimuli: int, k: int = 1) -> tuple[int, float]:
    """``(bytes, seconds)`` rough cost of ``n`` resamples of ``n_stimuli`` stimuli compared with
    ``k`` targets (one statistic; a run pays the seconds once per job)."""
    p = n_stimuli * (n_stimuli - 1) // 2
    return int(n) * int(n_stimuli) * 8 + WORKING_BYTES, float(n) * p * k * SECONDS_PER_ELEMENT


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check_resamples(n: int, n_stimuli: int, *, parameter: str, k: int = 1,
                    n_jobs: int = 1) -> tuple[int, float]:
    """Refuse ``n`` resamples above ``MAX_RESAMPLES`` or half the physical memory, naming both
    estimates; returns ``resample_cost`` (seconds times ``n_jobs``) when accepted."""
    n = int(n)
    nbytes, seconds = resample_cost(n, n_stimuli, k)
    seconds *= max(1, int(n_jobs))
    mem = physical_memory()
    estimate = (f"{n:,} resamples of {n_stimuli} stimuli" + (f" against {k} RDMs" if k > 1
                                                             else "") +
                f": about {nbytes / 1e9:.2f} GB and "
                f"{_human(seconds)} of CPU time" + (f" over {n_jobs} jobs" if n_jobs > 1 else ""))
    if n > MAX_RESAMPLES:
        raise InputError(parameter, f"at most {MAX_RESAMPLES:,} resamples (beyond that the "
                         "reported interval or p-value no longer changes; stats._budget)",
                         estimate, f"use e.g. {parameter}=1000 for intervals, 10000 for "
                         "p-values near 0.001")
    if mem is not None and nbytes > mem / 2:
        raise InputError(parameter, f"resamples whose indices fit in half this machine's "
                         f"{mem / 1e9:.1f} GB of memory", estimate, f"lower {parameter}")
    return nbytes, seconds
