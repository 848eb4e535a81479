"""``cortexalign study spiking``: train, test, measure, score, report (resumable at each step)."""

from __future__ import annotations

import time
from pathlib import Path

from cortexalign.errors import InputError
from cortexalign.studies import StudyResult
from cortexalign.studies.spiking._plan import PLANS, StudyPlan

__all__ = ["run", "run_plan"]


def run_plan(plan: StudyPlan, data: str | Path | None, out: str | Path, device: str = "auto",
             progress: bool = True, subset: str | None = None) -> StudyResult:
    """Run the study as ``plan`` says (``run`` picks the plan; tests pass a smaller one)."""
    from cortexalign.bench import load_config, run_experiment
    from cortexalign.device import resolve_device
    from cortexalign.reports import write_report
    from cortexalign.results import RESULTS_FILE
    from cortexalign.spiking import load_image_data
    from cortexalign.studies.spiking._data import allen_source, select_task, task_source
    from cortexalign.studies.spiking._measures import time_step_information
    from cortexalign.studies.spiking._plan import model_entries, scoring_configs
    from cortexalign.studies.spiking._report import store_rows, write_study_report
    from cortexalign.studies.spiking._train import load_trained, train_models

    t0, c0 = time.perf_counter(), time.process_time()
    out, data = Path(out), None if data is None else Path(data)
    # the task data is checked before anything is written (select_task creates OUT/data)
    task = select_task(task_source(data, required=plan.classes is None), plan.classes,
                       plan.n_train, plan.n_test, out / "data" / "task.npz")
    allen, simulated = allen_source(data, out, progress)
    dev = resolve_device(device)
    trained = train_models(plan, task, out, str(dev), progress)
    test_x = load_image_data(task.path).test_x[:plan.n_measure]
    information = {t.name: time_step_information(load_trained(
        plan, t.name, t.checkpoint, task.num_classes, dev), test_x, plan.mi_layer)
        for t in trained if t.name != plan.ann}
    key = store_rows(out, plan, task, trained, information, subset)
    entries = model_entries(plan, {t.name: t.checkpoint for t in trained}, task.num_classes)
    failures = []
    for cfg in scoring_configs(plan, entries, allen, str(dev)).values():
        summary = run_experiment(load_config(cfg), out, progress=progress,
                                 allow_config_change=True)
        failures += summary.failures
    seconds = (time.perf_counter() - t0, time.process_time() - c0)
    files = {"report": write_study_report(out, plan, key, simulated, seconds),
             "report_html": write_report(out), "results": out / RESULTS_FILE}
    lines = [f"spiking study ({subset or 'full'}): {len(trained)} models trained on "
             f"{task.source} ({task.num_classes} classes, {task.n_train} training / "
             f"{task.n_test} test images); Allen-layout target "
             f"{'simulated' if simulated else str(allen)}"]
    for t in trained:
        mi = information.get(t.name)
        lines.append(f"  {t.name}: held-out accuracy {t.accuracy:.3f} ({t.n_correct}/{t.n_test}, "
                     f"chance {t.chance:.3f}, binomial p = {t.p_value:.2g})"
                     + (f", adjacent-step MI {mi.adjacent:.3f} nats" if mi else ""))
    lines += [f"  failed: {f.get('label', '')} {f.get('error', '')}"[:200] for f in failures[:5]]
    lines.append(f"(study took {seconds[0]:.0f} s wall, {seconds[1]:.0f} s CPU in this process)")
    return StudyResult(out=out, files=files, summary="\n".join(lines))


def run(data: str | Path | None, out: str | Path, subset: str | None = None,
        device: str = "auto", progress: bool = True) -> StudyResult:
    """The study (``cortexalign study spiking --out OUT [--subset cpu] [--data DIR]``).

    Parameters
    ----------
    data : None (the CPU subset's shipped CIFAR-10 classes and a simulated Allen-layout
        target) or a folder holding CIFAR-10 (``cifar10_subset/cifar10_subset.npz``...) and/or
        ``allen/`` (a Brain Observatory cache); the full study needs CIFAR-10 there.
    out : results directory (resumable: finished trainings and scored jobs are skipped).
    subset : ``"cpu"`` (``PLANS["cpu"]``, minutes on two cores) or None (``PLANS["full"]``,
        for a GPU).
    device : ``auto``, ``cpu`` or ``cuda:N``.
    """
    name = "full" if subset is None else subset
    if name not in PLANS:
        raise InputError("--subset", "'cpu' or none (the full study)", repr(subset),
                         "pass --subset cpu")
    return run_plan(PLANS[name], data, out, device=device, progress=progress, subset=subset)
