"""The study catalogue: one ``register_study`` call per study (imports nothing heavy)."""

from __future__ import annotations

from cortexalign.studies import Study, register_study

__all__: list[str] = []

# Each study adds its entry here, e.g.
# register_study(Study(name="jalil2026", title="...", citation="...",
#                      run="cortexalign.studies.jalil2026:run",
#                      simulate="cortexalign.studies.jalil2026:simulate"))
register_study(Study(
    name="jalil2026",
    title="Attention maps of Segment Anything models vs mouse visual cortex: map metrics, RSA "
          "and encoding per area x Cre line x cortical layer, efficiency and mIoU trade-off",
    citation="Jalil, Qazi & Iqbal, PMLR 308, 2026",
    run="cortexalign.studies.jalil2026:run",
    simulate="cortexalign.studies.jalil2026:simulate"))
