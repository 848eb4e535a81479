"""The alignment-training study: does training with the brain as a regulariser raise held-out
brain alignment, and what does it cost on the task?

A small timm model is trained from scratch on a task (the CIFAR-10 subset given with ``--data``;
scikit-learn's bundled digits without it) with loss = task + lambda x (-soft-Spearman RSA) between
one layer and the 92-object human IT RDMs of Kriegeskorte et al. (2008) on 69 training stimuli,
for every lambda of the grid and several seeds at the same budget. 23 stimuli (stratified by
category, split before anything is fitted) are held out: the alignment is measured on them, with
a stimulus-bootstrap interval and the noise ceiling of the held-out RDMs, and every lambda > 0 is
compared with its lambda = 0 twin (same seed) by paired tests (``_analysis``). The report states
the result whatever it is. ``subset="cpu"``: 3 lambdas x 3 seeds x 150 steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from cortexalign.studies import StudyResult

__all__ = ["run", "run_plan"]

CITATION = ("Kriegeskorte et al. (2008) Neuron 60(6) (human IT RDMs); soft ranks: Blondel, "
            "Teboul, Berthet & Djolonga (2020) ICML; cortexalign's own experiment")


def run(data: Path | None, out: Path, subset: str | None = None, device: str = "auto",
        progress: bool = True) -> StudyResult:
    """Run the study's grid (resumable: each run resumes from its checkpoints) and report.

    Parameters
    ----------
    data : the task data (a folder holding ``cifar10_subset/cifar10_subset.npz``, the npz, or an
        image folder); None: scikit-learn's bundled digits.
    out : results folder; subset : ``"cpu"`` or None (the full grid); device : where to train.

    Returns
    -------
    StudyResult with the report, the figures and the store.
    """
    from cortexalign.studies.alignment_training._plan import plan_for, task_data_path

    return run_plan(plan_for(subset), task_data_path(data), out, device, progress, subset)


def run_plan(plan, task: Path | None, out: Path, device: str = "auto", progress: bool = True,
             subset: str | None = None) -> StudyResult:
    """``run`` for an explicit ``_plan.StudyPlan`` (tests use a tiny one)."""
    from cortexalign.align import AlignConfig, BrainTarget, subset_target, train_aligned
    from cortexalign.results import RESULTS_FILE
    from cortexalign.studies.alignment_training._analysis import (
        lam_rows,
        paired_rows,
        run_outcome,
    )
    from cortexalign.studies.alignment_training._report import store_rows, write_report

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    outcomes, task_source, split = [], "", None
    for lam in plan.lams:
        for seed in plan.seeds:
            cfg = AlignConfig(**plan.run_config(lam, seed, out / "runs" / f"lam{lam:g}_seed{seed}",
                                                task, device, progress))
            result = train_aligned(cfg)
            split = result.split
            target = BrainTarget.load(plan.target).with_split(split)
            held = subset_target(target.data, split.heldout)
            outcomes.append(run_outcome(result, held, plan.layer, "correlation",
                                        plan.n_bootstrap, lam, seed))
            task_source = str(task) if task is not None else "scikit-learn's digits"
    config_text = json.dumps({"study": "alignment_training", "subset": subset,
                              "plan": repr(plan), "task": task_source}, indent=1)
    store_rows(out / RESULTS_FILE, plan, outcomes, lam_rows(outcomes),
               paired_rows(outcomes), config_text)
    files = write_report(out, len(split.heldout), task_source, plan)
    summary = "\n".join(line[2:] for line in files["report"].read_text().splitlines()
                        if line.startswith("- lambda"))
    return StudyResult(out=out, files=files, summary=f"{summary}\n(study took "
                       f"{time.perf_counter() - t0:.0f} s)")
