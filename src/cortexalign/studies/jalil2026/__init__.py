"""The attention-maps-vs-mouse-cortex study (Jalil, Qazi & Iqbal, PMLR 308, 2026), end to end.

``simulate(out, size)`` writes an Allen Brain Observatory cache and a COCO set with a planted
group; ``run(data, out, subset)`` runs the whole analysis through the one runner
(``cortexalign.bench.run_experiment``), then the efficiency profile and segmentation mIoU of each
model, the paper's comparisons and the report. See ``docs/studies/jalil2026.md``.
"""

from cortexalign.studies.jalil2026._design import SIM_SIZES, Planted, SimSpec
from cortexalign.studies.jalil2026._plan import PLANS, StudyPlan, study_config
from cortexalign.studies.jalil2026._run import run, run_plan
from cortexalign.studies.jalil2026._simulate import planted_drive, simulate, simulate_spec

__all__ = ["simulate", "simulate_spec", "planted_drive", "SimSpec", "Planted", "SIM_SIZES",
           "run", "run_plan", "StudyPlan", "PLANS", "study_config"]
