"""Analysis kinds: what the one runner runs, each through validate -> plan -> execute -> store.

A kind (a subclass of :class:`AnalysisKind`, registered in ``ANALYSES``) says

``validate(request)``
    what it checks (and measures) before anything is written; raise ``InputError``.
``units(ctx)``
    its units of work: what is loaded once and placed as one task (a model of the score grid:
    loaded once, its layers extracted once; every partition job together; one SAE-BrainMap).
``plan(ctx, unit)``
    the unit's jobs, each with a stable ``key`` (everything that determines its result hashed)
    and a ``label``; jobs that cannot run (a layer the model lacks) come back as ``failed``.
``prepare(ctx, plan, todo)``
    what the unfinished jobs share (features read or extracted once).
``execute(ctx, job, shared)``
    one job's rows. ``write(ctx, job, rows)`` stores them in the transaction that marks the job
    finished (default: ``record_job``, the ``scores`` table).

The runner (:func:`run_unit`, called by every executor) does the rest the same way for every
kind: a job already in the store is skipped (resume), a job is marked running before it starts
(``cortexalign status``), a failing job is recorded with its error while the others go on
(unless the kind is ``fail_fast``), progress bars advance and ``on_job_done`` is called once the
job's writes are committed. ``placement`` says where units run: ``executor`` (the run's executor:
local, or one Ray task per unit) or ``driver`` (this process, after the executor's units: the
partitions read the features those wrote to the cache).

Kinds: ``scores`` (``bench._scores``), ``partitions`` (``bench._partitions``),
``second_order`` (``bench._second_order``), ``model_cards`` (``bench._cards_kind``) and
``sae_brainmap`` (``cortexalign.sae.runner``, which registers itself when imported;
``analysis_kind`` imports it by name).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

from cortexalign.bench._context import (
    RunContext,
    RunRequest,
    after_commit,
    failure_message,
    record_failure,
)
from cortexalign.errors import CortexAlignError
from cortexalign.registry import Registry
from cortexalign.results import BatchedWrites

__all__ = ["AnalysisKind", "ANALYSES", "Unit", "Plan", "analysis_kind", "run_unit",
           "KIND_MODULES"]

#: Every analysis kind the runner knows, by name.
ANALYSES: Registry[AnalysisKind] = Registry("analysis kind")

#: Kinds defined in packages above bench (they import bench, so bench names their module and
#: imports it when the kind is asked for).
KIND_MODULES = {"sae_brainmap": "cortexalign.sae.runner"}


@dataclass(frozen=True)
class Unit:
    """One unit of work an executor places: ``item`` is the kind's (a ``ModelSpec``...).

    Attributes
    ----------
    kind : the analysis kind's name. label : what failures and progress name it by.
    item : the kind's object. title : the progress bar's text (default: the label).
    """

    kind: str
    label: str
    item: Any = None
    title: str = ""


@dataclass
class Plan:
    """The jobs of one unit (each with ``key`` and ``label``), those that cannot run with the
    reason (``failed``), and whatever planning loaded that preparing reuses (``state``)."""

    jobs: list[Any]
    failed: list[tuple[Any, str]] = field(default_factory=list)
    state: Any = None


class AnalysisKind:
    """A kind of analysis the runner drives (see the module docstring for the hooks)."""

    name: ClassVar[str] = ""
    placement: ClassVar[str] = "driver"
    """``executor`` (local or Ray, one task per unit) or ``driver`` (this process, after)."""
    fail_fast: ClassVar[bool] = False
    """Stop the run at the first failing job (it is recorded first), instead of going on."""

    def validate(self, request: RunRequest) -> Mapping[str, Any]:
        """Check what only this kind needs, before anything is written; return what was
        measured on the way (merged into ``RunContext.inputs``)."""
        return {}

    def units(self, ctx: RunContext) -> list[Unit]:
        """The units of work of the run (none: the kind has nothing to do)."""
        raise NotImplementedError

    def plan(self, ctx: RunContext, unit: Unit) -> Plan:
        """Every job of ``unit`` (finished ones included: the runner skips them)."""
        raise NotImplementedError

    def prepare(self, ctx: RunContext, plan: Plan, todo: list[Any]) -> Any:
        """What the unfinished jobs ``todo`` share (features...), handed to each ``execute``."""
        return None

    def execute(self, ctx: RunContext, job: Any, shared: Any) -> Sequence[Any]:
        """One job's rows (raise on failure: the runner records it)."""
        raise NotImplementedError

    def write(self, ctx: RunContext, job: Any, rows: Sequence[Any]) -> None:
        """Store ``rows`` and mark ``job`` finished, in one transaction."""
        ctx.store.record_job(job.key, ctx.run_id, rows, replace=ctx.replace)

    def release(self, shared: Any) -> None:
        """Free what ``prepare`` held, once the unit's jobs are done."""

    def citations(self, config: Any) -> list[tuple[str, str]]:
        """``(subject, reference)`` notes of what the kind relies on in ``config``."""
        return []


def analysis_kind(name: str) -> AnalysisKind:
    """The kind registered as ``name`` (importing its module when it lives above bench)."""
    if name not in ANALYSES and name in KIND_MODULES:
        importlib.import_module(KIND_MODULES[name])
    return ANALYSES.get(name)


def _report_done(ctx: RunContext, task: Any, job: Any) -> None:
    """A job's writes are in the store: advance the progress bar and call the hook."""
    if ctx.bar is not None and task is not None:
        ctx.bar.advance(task)
    if ctx.on_job_done is not None:
        ctx.on_job_done(job)


def run_unit(ctx: RunContext, unit: Unit) -> None:
    """Plan ``unit``, skip its finished jobs, prepare and execute the others, store their rows.

    A unit that cannot be planned (a model that does not load) is a stored ``failure`` note;
    a job that fails is recorded failed with its error and the others go on (a ``fail_fast``
    kind re-raises after recording it).
    """
    kind, summary, store = analysis_kind(unit.kind), ctx.summary, ctx.store
    try:
        plan = kind.plan(ctx, unit)
    except CortexAlignError as err:  # stored: the report lists it from the store
        summary.failures.append({"job": unit.label, "error": str(err)})
        store.add_notes(ctx.run_id, "failure", [(unit.label, str(err))])
        return
    for job, msg in plan.failed:
        summary.n_jobs += 1
        summary.job_keys.add(job.key)
        record_failure(store, ctx.run_id, summary, job.key, job.label, msg)
    summary.n_jobs += len(plan.jobs)
    summary.job_keys.update(j.key for j in plan.jobs)
    todo = [j for j in plan.jobs if ctx.replace or j.key not in ctx.finished]
    summary.n_skipped += len(plan.jobs) - len(todo)
    if not todo:
        return
    shared = kind.prepare(ctx, plan, todo)
    task = None if ctx.bar is None else ctx.bar.add_task(unit.title or unit.label,
                                                          total=len(todo))
    try:
        for job in todo:
            store.start_job(job.key, ctx.run_id)  # a crash leaves it 'running' (status)
            try:
                kind.write(ctx, job, kind.execute(ctx, job, shared))
                summary.n_done += 1
            except Exception as err:  # one job's failure must not stop the others
                record_failure(store, ctx.run_id, summary, job.key, job.label,
                               failure_message(err))
                if kind.fail_fast:
                    raise
            after_commit(store, partial(_report_done, ctx, task, job))
    finally:
        kind.release(shared)
    if isinstance(store, BatchedWrites):  # the unit's last batch: report it now
        store.flush()
