"""The study catalogue: one ``register_study`` call per study (imports nothing heavy)."""

from __future__ import annotations

from cortexalign.studies import Study, register_study

__all__: list[str] = []

# Each study adds its entry here, e.g.
# register_study(Study(name="jalil2026", title="...", citation="...",
#                      run="cortexalign.studies.jalil2026:run",
#                      simulate="cortexalign.studies.jalil2026:simulate"))
_ = (Study, register_study)
