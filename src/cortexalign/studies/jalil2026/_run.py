"""``cortexalign study jalil2026``: the alignment grid, the model cards, the comparisons, the report.

1. The alignment grid through the one runner (``cortexalign.bench``): every model entry of the
   plan (attention and conv maps) x the (area, Cre line, cortical layer) groups x the map
   metrics, RSA and ridge, with ceilings, permutation p-values and BH FDR per grid. Resumable:
   a second call skips the jobs already in ``OUT/results.duckdb``.
2. For each model: the efficiency profile (parameters, FLOPs, latency, memory) with the weights
   the grid used, and the prompted segmentation mIoU on ``DATA/coco``; one model card each in the
   store (the report's accuracy / efficiency / alignment section reads them).
3. The paper's comparisons (``comparisons.md``) and, on simulated data, the planted group's
   recovery (``planted.md``); the report is written again with the model cards.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

from cortexalign.errors import InputError
from cortexalign.studies import StudyResult
from cortexalign.studies.jalil2026._plan import PLANS, StudyPlan, study_config

__all__ = ["run", "run_plan", "model_cards"]


def _check_data(data: Path | None) -> Path:
    if data is None:
        raise InputError("--data", "the study's data directory", "nothing", "write one with "
                         "`cortexalign simulate jalil2026 --out DIR`, or lay out the Allen cache "
                         "as docs/studies/jalil2026.md says, then pass --data DIR")
    data = Path(data)
    if not (data / "allen").is_dir():
        raise InputError("--data", "a directory holding allen/ (a Brain Observatory cache) and "
                         "coco/ (a COCO instance set)", repr(str(data)),
                         "pass the directory `cortexalign simulate jalil2026` wrote")
    return data


def _segmentation_samples(data: Path, n: int | None):
    from cortexalign.segmentation import read_coco

    ann = data / "coco" / "annotations" / "instances.json"
    if not ann.is_file():
        return None
    samples = read_coco(ann, data / "coco" / "images")
    return list(samples if n is None else itertools.islice(samples, n))


def model_cards(config, data: Path, out: Path, plan: StudyPlan, device: str = "auto",
                progress: bool = True) -> dict[str, dict[str, Any]]:
    """Profile each distinct model of ``config`` with its weights, measure its mIoU, and store
    one card per model; models whose card is already stored are skipped (resume)."""
    from rich.console import Console

    from cortexalign.compute import compute_threads
    from cortexalign.device import resolve_device
    from cortexalign.models import load_model
    from cortexalign.models.profile import device_string, profile_model
    from cortexalign.results import RESULTS_FILE, ModelCard, ResultsStore
    from cortexalign.segmentation import evaluate_segmentation, sam_predictor

    console = Console(stderr=True, quiet=not progress)
    dev = resolve_device(device)
    store = ResultsStore(out / RESULTS_FILE)
    have = store.frame("model_cards")
    done = set(zip(have["model_id"], have["device"], strict=True)) if len(have) else set()
    samples = _segmentation_samples(data, plan.seg_images)
    seen, cards = set(), {}
    for spec in config.models:
        key = (spec.name, spec.weights, spec.untrained, json.dumps(spec.kwargs, sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        adapter = load_model(spec.name, weights=spec.weights, untrained=spec.untrained,
                             seed=spec.seed, device=dev, preprocess=spec.preprocess or None,
                             **spec.kwargs)
        if (adapter.model_id, device_string(dev)) in done:
            continue
        t0 = time.perf_counter()
        miou, note = None, ""
        if samples is not None and getattr(adapter, "family", None):  # SAM-family encoders
            try:
                predictor = sam_predictor(adapter, spec.weights)
                with compute_threads(math.inf):  # one thread when other processes load the CPU
                    miou = evaluate_segmentation(samples, predictor, prompt=plan.seg_prompt).miou
            except ImportError as err:  # segment-anything / sam2 not installed
                note = f"mIoU not measured: {err} (pip install 'cortexalign[sam]')"
        card = profile_model(adapter, device=dev, n_warmup=1, n_repeat=plan.profile_repeats)
        card.extra.update(weights=spec.weights or f"untrained (seed {spec.seed})",
                          segmentation={"prompt": plan.seg_prompt, "images": len(samples or []),
                                        "note": note})
        store.put_model_card(ModelCard.from_profile(card, miou))
        cards[adapter.model_id] = {"params": card.params, "flops": card.flops,
                                   "latency_ms": card.latency_ms, "miou": miou}
        console.print(f"card {adapter.model_id}: mIoU {miou if miou is None else f'{miou:.3f}'}"
                      f", {card.latency_ms:.0f} ms/image ({time.perf_counter() - t0:.0f} s)")
    return cards


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
    summary = run_experiment(config, out, progress=progress)
    model_cards(config, data, out, plan, device, progress)
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
