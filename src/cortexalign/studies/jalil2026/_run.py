"""``cortexalign study jalil2026``: the alignment grid, the model cards, the comparisons, the report.

1. The alignment grid through the one runner (``cortexalign.bench``): every model entry of the
   plan (attention and conv maps) x the (area, Cre line, cortical layer) groups x the map
   metrics, RSA and ridge, with ceilings, permutation p-values and BH FDR per grid. Resumable:
   a second call skips the jobs already in ``OUT/results.duckdb``.
2. For each model, by the same run (the config's ``segmentation:`` entry, ``bench._cards``, as
   ``cortexalign miou`` and any config): the efficiency profile (parameters, FLOPs, latency,
   memory) with the weights the grid used, and the prompted segmentation mIoU on ``DATA/coco``;
   one model card each in the store (the report's accuracy / efficiency / alignment section
   reads them).
3. The paper's comparisons (``comparisons.md``) and, on simulated data, the planted group's
   recovery (``planted.md``); the report, with the model cards.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from cortexalign.errors import InputError
from cortexalign.studies import StudyResult
from cortexalign.studies.jalil2026._plan import PLANS, StudyPlan, study_config

__all__ = ["run", "run_plan"]


def _check_data(data: Path | None) -> Path:
    if data is None:
        raise InputError("--data", "the study's data directory", "nothing", "write one with "
                         "`cortexalign simulate jalil2026 --out DIR`, or lay out the Allen cache "
                         "as docs/studies/jalil2026.md says, then pass --data DIR")
    data = Path(data)
    if not (data / "allen").is_dir() or not (data / "coco" / "annotations" / "instances.json"
                                             ).is_file():
        raise InputError("--data", "a directory holding allen/ (a Brain Observatory cache) and "
                         "coco/ (a COCO instance set: annotations/instances.json, images/)",
                         repr(str(data)), "pass the directory `cortexalign simulate jalil2026` "
                         "wrote, or add the missing part")
    return data


def run_plan(data: str | Path, out: str | Path, plan: StudyPlan, device: str = "auto",
             progress: bool = True) -> StudyResult:
    """Run the study as ``plan`` says (see the module docstring); ``run`` picks the plan."""
    from cortexalign.bench import load_config, run_experiment
    from cortexalign.reports import write_report
    from cortexalign.results import RESULTS_FILE, ResultsStore
    from cortexalign.studies.jalil2026._compare import paper_comparisons, planted_recovery

    data, out = _check_data(data), Path(out)
    t0 = time.perf_counter()
    config = load_config(dict(study_config(data, plan), device=device))
    summary = run_experiment(config, out, progress=progress)  # scores, then the model cards
    frame = ResultsStore(out / RESULTS_FILE, read_only=True).scores_frame()
    files = dict(summary.files)
    files["comparisons"] = paper_comparisons(frame, out / "comparisons.md")
    planted = data / "planted.json"
    recovered = None
    if planted.is_file():
        files["planted"], recovered = planted_recovery(frame, json.loads(planted.read_text()),
                                                       out / "planted.md")
    files["report"] = write_report(out)
    untrained = sorted({m.name for m in config.models if m.untrained})
    lines = [f"jalil2026: {summary.n_done} jobs scored, {summary.n_skipped} already done, "
             f"{len(summary.failures)} failed, in {time.perf_counter() - t0:.0f} s"]
    if untrained:
        lines.append(f"untrained (no checkpoint in {data / 'checkpoints'}): "
                     + ", ".join(untrained))
    if recovered is not None:
        lines.append(f"planted group {recovered['target']}: {recovered['verdict']}")
    for f in summary.failures[:5]:
        lines.append(f"failed: {f.get('label', '')} {f.get('error', '')}"[:200])
    return StudyResult(out=out, files=files, summary="\n".join(lines))


def run(data: str | Path | None, out: str | Path, subset: str | None = None,
        device: str = "auto", progress: bool = True) -> StudyResult:
    """The study (``cortexalign study jalil2026 --data DIR --out OUT [--subset cpu]``).

    Parameters
    ----------
    data : a data directory with ``allen/`` (a Brain Observatory cache: the ophys NWB files)
        and ``coco/`` (``annotations/instances.json``, ``images/``); ``checkpoints/`` may hold
        the official weights (``CHECKPOINTS``).
    out : the results directory (resumable).
    subset : None for the whole study (``PLANS["full"]``) or ``"cpu"`` (``PLANS["cpu"]``).
    device : ``auto``, ``cpu`` or ``cuda:N``.
    """
    name = "full" if subset is None else subset
    if name not in PLANS:
        raise InputError("--subset", " or ".join(k for k in PLANS if k != "full") + " (or "
                         "none for the whole study)", repr(subset), "pass --subset cpu")
    return run_plan(data, out, PLANS[name], device=device, progress=progress)
