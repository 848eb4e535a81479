"""Reports: figures and the HTML summary written at the end of a run."""

from cortexalign.reports._figures import best_layers, layerwise_figure
from cortexalign.reports._summary import write_summary

__all__ = ["best_layers", "layerwise_figure", "write_summary"]
