"""cortexalign: measure how vision models line up with the visual brain."""

__version__ = "0.1.0"
