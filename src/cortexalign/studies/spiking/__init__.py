"""The spiking-transformer study: do the three families learn, what do they cost, and how do
their representations compare with the brain's, next to an ANN of their size?

``run(data, out, subset)`` trains each family (``hst``: QKFormer's hierarchical spiking
transformer; ``spiliformer``: lateral inhibition; ``tdformer``: top-down feedback across time
steps) and a timm ViT of about the same size by one recipe (``cortexalign.spiking.train_snn``),
tests each on held-out images (binomial test against chance), measures energy (the Spikformer
convention: the real-valued first layer counted once), firing rates and the mutual information
between time steps, then scores every trained model and its untrained control through the one
runner (``cortexalign.bench``) against the 92-object human and monkey IT RDMs (shipped) and an
Allen-layout two-photon target (``DATA/allen``, or simulated). Everything goes to
``OUT/results.duckdb``; ``report.md`` and ``report.html`` are written from it.
See ``docs/studies/spiking.md``.
"""

from cortexalign.studies.spiking._data import SIM_SPEC, TaskData, simulate
from cortexalign.studies.spiking._plan import PLANS, StudyPlan
from cortexalign.studies.spiking._run import run, run_plan

__all__ = ["run", "run_plan", "simulate", "PLANS", "StudyPlan", "TaskData", "SIM_SPEC"]
