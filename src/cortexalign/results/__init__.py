"""Results: the DuckDB store of runs, jobs, scores and model cards, and the run manifest."""

from cortexalign.results._derived import NOTE_KINDS, best_rows
from cortexalign.results._export import EXPORT_FORMATS, export_frame
from cortexalign.results._manifest import TRACKED_PACKAGES, git_revision, hardware, package_versions
from cortexalign.results._partitions import PartitionRecord
from cortexalign.results._paths import RESULTS_FILE, results_path
from cortexalign.results._schema import SCHEMA_VERSION, TABLES, ModelCard, ScoreRecord
from cortexalign.results._second_order import SecondOrderRecord
from cortexalign.results._store import RUN_STATUSES, ResultsStore

__all__ = ["ResultsStore", "ScoreRecord", "ModelCard", "SCHEMA_VERSION", "TABLES", "RUN_STATUSES",
           "EXPORT_FORMATS", "export_frame", "package_versions", "git_revision", "hardware", "TRACKED_PACKAGES"]
__all__ += ["PartitionRecord", "RESULTS_FILE", "results_path", "NOTE_KINDS", "best_rows"]
__all__ += ["SecondOrderRecord"]
from cortexalign.results._batch import BatchedWrites  # noqa: E402

__all__ += ["BatchedWrites"]
from cortexalign.results._training import TRAINING_KINDS, TrainingRecord  # noqa: E402

__all__ += ["TrainingRecord", "TRAINING_KINDS"]
