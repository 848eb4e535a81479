"""The report as a user sees it: opened in headless Chromium (see conftest.Browser)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import matplotlib.image as mpimg
import numpy as np

from cortexalign.reports import write_report
from cortexalign.results import ResultsStore

EXPECTED_SECTIONS = {"summary", "curves", "heatmaps", "comparison", "citations"}
ABSENT_SECTIONS = {"maps", "tradeoff", "sae", "spiking"}  # no data for these in the run


class _Dom(HTMLParser):
    """Collects the elements of a dumped DOM: (tag, attrs) in order, and the text of <title>."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.title, self._in_title, self._cell, self.cell_text = "", False, None, {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        d = {k: v or "" for k, v in attrs}
        self.elements.append((tag, d))
        self._in_title = tag == "title" and not self.title
        if tag == "td" and "cell" in d.get("class", "").split():
            self._cell = len(self.elements) - 1
            self.cell_text[self._cell] = ""

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._cell is not None:
            self.cell_text[self._cell] += data

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.elements
                if t == tag and (cls is None or cls in a.get("class", "").split())]


def test_real_run_report_renders_without_console_errors(real_run, browser, tmp_path):
    report = real_run / "report.html"
    page = browser.dom(report)
    assert page.console == []  # no console message at all, errors included
    dom = _Dom(page.dom)
    sections = {a["id"] for a in dom.find("section", "report-section")}
    assert EXPECTED_SECTIONS <= sections and not (ABSENT_SECTIONS & sections)
    assert dom.title == "cortexalign report: report-test"
    # one inline SVG chart per target, one point per layer, each with its value
    charts = dom.find("svg", "chart")
    assert len(charts) == 2 and len(dom.find("circle", "pt")) == 4
    # self-contained: no resource outside the file
    refs = [a.get(k) for _, a in dom.elements for k in ("src", "href") if a.get(k)]
    assert refs and all(r.startswith(("data:", "#")) for r in refs), refs
    assert len(dom.find("script")) == 1  # the table sorter, nothing else

    png = tmp_path / "report.png"
    shot = browser.screenshot(report, png)
    assert shot.console == [] and png.is_file()
    img = mpimg.imread(png)[..., :3]
    assert img.shape[0] == 2200 and img.shape[1] == 1280
    non_white = (img < 0.95).any(axis=2)
    assert non_white.mean() > 0.03  # text, tables and charts were drawn
    assert len(np.unique(img.reshape(-1, 3).round(2), axis=0)) > 20  # not a flat colour


def test_heatmap_cells_equal_the_stored_scores(real_run, browser):
    page = browser.dom(real_run / "report.html")
    dom = _Dom(page.dom)
    cells = {(a["data-layer"], a["data-target"]): a for a in dom.find("td", "cell")}
    stored = ResultsStore(real_run / "results.duckdb", read_only=True).scores_frame()
    assert len(cells) == len(stored) == 4
    for r in stored.itertuples():
        a = cells[(r.layer, r.target)]
        assert float(a["data-value"]) == r.value  # exact: the repr of the stored double
    # the outlined cell of each target is its best layer
    for target, g in stored.groupby("target"):
        best = g.loc[g["value"].idxmax(), "layer"]
        assert "best" in cells[(best, target)]["class"].split()


EVIL = "<script>document.title='PWNED'</script><img src=x onerror=\"document.title='PWNED'\">"


def test_html_in_names_shows_as_text_and_nothing_runs(browser, make_results, tmp_path):
    model, layer, target = f"net{EVIL}", f"blocks.0{EVIL}", f"allen/VIS{EVIL}/Cux2{EVIL}"
    config = {"name": f"evil{EVIL}", "stimuli": {"source": f"imgs{EVIL}"},
              "models": [{"name": "x", "label": model, "layers": [layer, "blocks.1"]}],
              "neural": [{"source": f"t{EVIL}", "label": target}],
              "metrics": [{"name": "rsa", "options": {"k": EVIL}}]}
    rows = [("j0", [dict(model=model, layer=layer, target=target, value=0.2, index=0, n_layers=2,
                         p_value=0.01, ci_low=0.1, ci_high=0.3, extra={"note": EVIL})]),
            ("j1", f"FAILED: ValueError: {EVIL}")]
    make_results(tmp_path, config, rows)
    report = write_report(tmp_path)
    page = browser.dom(report)
    assert page.console == []
    dom = _Dom(page.dom)
    assert dom.title.startswith("cortexalign report: evil<script>")  # shown as text
    assert "PWNED" != dom.title.strip() and "PWNED" in dom.title
    assert len(dom.find("script")) == 1 and not dom.find("img", None)
    assert not [a for _, a in dom.elements if any(k.startswith("on") for k in a)]
    # the names appear as text in the heatmap header and the failure list
    assert page.dom.count("&lt;script&gt;document.title='PWNED'&lt;/script&gt;") >= 5
    cell = dom.find("td", "cell")[0]
    assert cell["data-layer"] == layer and cell["data-target"] == target


def test_nan_scores_show_as_missing_in_the_browser(browser, tmp_path):
    import pandas as pd

    from cortexalign.reports import ReportData, render_report

    scores = pd.DataFrame({"model": ["m", "m", "m"], "layer": ["a", "b", "a"],
                           "target": ["V1", "V1", "V4"], "metric": ["rsa"] * 3,
                           "value": [0.5, np.nan, 0.25], "ci_low": np.nan, "ci_high": np.nan,
                           "ceiling_low": np.nan, "ceiling_high": np.nan, "p_value": np.nan})
    path = tmp_path / "nan.html"
    path.write_text(render_report(ReportData(scores=scores, source="by hand"), title="nan"))
    page = browser.dom(path)
    assert page.console == []
    dom = _Dom(page.dom)
    idx = {(a["data-layer"], a["data-target"]): i for i, (t, a) in enumerate(dom.elements)
           if t == "td" and "cell" in a.get("class", "")}
    cells = {k: dom.elements[i][1] for k, i in idx.items()}
    for key in (("b", "V1"), ("b", "V4")):  # a NaN score, and a score never stored
        assert "missing" in cells[key]["class"] and cells[key]["data-value"] == ""
        assert dom.cell_text[idx[key]].strip() == "—"
    assert float(cells[("a", "V4")]["data-value"]) == 0.25
    assert not re.search(r">\s*0\.000\s*<", page.dom)  # nothing shown as zero
    assert len(dom.find("circle", "pt")) == 2  # the NaN point is not drawn
