"""Results: the DuckDB store of runs, jobs, scores and model cards, and the run manifest."""

from cortexalign.results._manifest import TRACKED_PACKAGES, git_revision, hardware, package_versions
from cortexalign.results._schema import SCHEMA_VERSION, TABLES, ModelCard, ScoreRecord
from cortexalign.results._store import EXPORT_FORMATS, RUN_STATUSES, ResultsStore

__all__ = ["ResultsStore", "ScoreRecord", "ModelCard", "SCHEMA_VERSION", "TABLES", "RUN_STATUSES",
           "EXPORT_FORMATS", "package_versions", "git_revision", "hardware", "TRACKED_PACKAGES"]
