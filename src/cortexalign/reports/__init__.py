"""Reports: the self-contained HTML report of a results directory, and its figures.

``write_report(results_dir)`` (also ``cortexalign report DIR`` and the end of every run) reads
the results store and the artefacts beside it and writes ``report.html``; ``MapPanel`` rows add
attention / conv map overlays beside neuron maps.
"""

from cortexalign.reports._figures import (
    best_layers,
    ceiling_text,
    layerwise_figure,
    normalized_scores,
)
from cortexalign.reports._load import ReportData, load_report_data
from cortexalign.reports._maps import MapPanel, map_panel_png
from cortexalign.reports._report import REPORT_FILE, SECTIONS, render_report, write_report
from cortexalign.reports._scores import prepare_scores, target_labels
from cortexalign.reports._summary import write_run_outputs, write_summary

__all__ = ["best_layers", "layerwise_figure", "normalized_scores", "write_summary", "write_report", "render_report",
           "load_report_data", "ReportData", "MapPanel", "map_panel_png", "SECTIONS",
           "REPORT_FILE", "prepare_scores", "target_labels", "ceiling_text", "write_run_outputs"]
