"""Interoperability with the tools researchers compare against (Brain-Score's model interface).

BrainIO assemblies are read by ``cortexalign.neural.load_brainio_assembly``; this package holds
what sits above both models and features: a cortexalign model exposed as a Brain-Score
``BrainModel``.
"""

from cortexalign.interop.brainscore import BrainScoreModel

__all__ = ["BrainScoreModel"]
