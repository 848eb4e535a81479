"""Brain alignment as a training signal: task loss + lambda x a differentiable alignment loss.

``train_aligned(config)`` (and ``cortexalign train-aligned CONFIG``) trains any registry model,
timm or ``snn:*``, on a task dataset while pulling chosen layers towards a brain target on the
target's *training* stimuli; held-out stimuli, split off by stimulus before anything is fitted,
only measure. The objectives are the metrics' own definitions kept in the autograd graph
(``cortexalign.metrics.rsa_objective``, ``cka_objective``, ``ridge_objective``).
"""

from cortexalign.align.checkpoint import list_checkpoints, load_checkpoint, read_checkpoint_meta
from cortexalign.align.config import OBJECTIVE_NAMES, AlignConfig
from cortexalign.align.data import TaskData, load_task_data
from cortexalign.align.record import circularity, training_target
from cortexalign.align.report import run_frame, write_run_report
from cortexalign.align.split import StimulusSplit, split_stimuli
from cortexalign.align.target import AlignmentLoss, BrainTarget, HeldOutLeakError, subset_target
from cortexalign.align.train import AlignResult, train_aligned

__all__ = ["AlignConfig", "OBJECTIVE_NAMES", "train_aligned", "AlignResult", "BrainTarget",
           "AlignmentLoss", "HeldOutLeakError", "subset_target", "StimulusSplit",
           "split_stimuli", "TaskData", "load_task_data", "training_target", "circularity", "run_frame",
           "write_run_report", "list_checkpoints", "load_checkpoint", "read_checkpoint_meta"]
