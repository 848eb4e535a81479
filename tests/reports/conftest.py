"""Fixtures of the report tests: headless Chromium (skips cleanly when absent) and one real run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Flags that keep a headless Chromium from reaching the network or a user profile.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0")
# Chromium writes every console message (log, warning, error, uncaught exception) as
# "...:INFO:CONSOLE(<line>)] "<text>", source: <url> (<line>)" (older builds: CONSOLE:<n>).
_CONSOLE = re.compile(r":CONSOLE[:(]")


@dataclass
class Page:
    """What Chromium made of a page: the DOM after its scripts ran, and its console lines."""

    dom: str
    console: list[str]


class Browser:
    """Runs one headless Chromium per call, with a fresh profile, on a local file."""

    def __init__(self, binary: str, scratch: Path):
        self.binary, self.scratch, self.calls = binary, scratch, 0

    def _run(self, html: Path, *extra: str) -> subprocess.CompletedProcess:
        self.calls += 1
        profile = self.scratch / f"profile{self.calls}"
        profile.mkdir(parents=True)
        return subprocess.run([self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra,
                               html.resolve().as_uri()], capture_output=True, text=True,
                              timeout=120, check=False)

    @staticmethod
    def _console(stderr: str) -> list[str]:
        return [line for line in stderr.splitlines() if _CONSOLE.search(line)]

    def dom(self, html: Path) -> Page:
        done = self._run(html, "--dump-dom")
        assert done.returncode == 0, done.stderr[-2000:]
        return Page(done.stdout, self._console(done.stderr))

    def screenshot(self, html: Path, png: Path, size: str = "1280,2200") -> Page:
        done = self._run(html, f"--screenshot={png}", f"--window-size={size}")
        assert done.returncode == 0, done.stderr[-2000:]
        return Page("", self._console(done.stderr))


@pytest.fixture(scope="session")
def browser(tmp_path_factory) -> Browser:
    binary = os.environ.get("CHROMIUM") or next(
        (shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)
    if binary is None:
        pytest.skip("headless Chromium is not installed (`apt-get install -y chromium` on Debian; "
                    "CI installs it in .ci/run); the browser checks of the report need it")
    return Browser(binary, tmp_path_factory.mktemp("chromium"))


@pytest.fixture(scope="session")
def real_run(tmp_path_factory) -> Path:
    """A real run: the Gabor V1 model (small config) against human and monkey IT on the 92
    bundled images, 20 bootstrap resamples; about 4 s on 2 cores."""
    from cortexalign.bench import load_config, run_experiment
    from cortexalign.reports import write_run_outputs

    out = tmp_path_factory.mktemp("run") / "out"
    cfg = load_config({
        "name": "report-test", "stimuli": {"source": "kriegeskorte92"},
        "models": [{"name": "gabor_v1", "label": "Gabor V1", "layers": ["simple", "complex"],
                    "pooling": "grid2", "kwargs": {"image_size": 32, "image_deg": None,
                                                   "frequencies": [0.1, 0.25],
                                                   "n_orientations": 4}}],
        "neural": [{"source": "kriegeskorte92.human_IT", "label": "human IT"},
                   {"source": "kriegeskorte92.monkey_IT", "label": "monkey IT"}],
        "metrics": [{"name": "rsa"}], "n_bootstrap": 20, "batch_size": 46})
    # what `cortexalign run` does: the runner writes the report before the run is closed
    summary = run_experiment(cfg, out, progress=False, outputs=write_run_outputs)
    assert summary.ok and summary.n_done == 4, summary.failures
    assert set(summary.files) >= {"report", "figure", "best_layers"}
    return out


def _record(model: str, layer: str, target: str, value: float, index: int, n_layers: int,
            **kw):
    from cortexalign.results import ScoreRecord

    extra = {"layer_index": index, "n_layers": n_layers, **kw.pop("extra", {})}
    return ScoreRecord(model=model, model_id=kw.pop("model_id", model), layer=layer,
                       target=target, metric=kw.pop("metric", "rsa"), value=value,
                       n_stimuli=10, extra=extra, **kw)


@pytest.fixture
def make_results():
    """Write a results store by hand: ``make_results(dir, config, rows, finish=True)`` where
    rows are ``(job_key, [ScoreRecord kwargs...] | "FAILED: msg" | "RUNNING")``; the run's
    statistics (q-values, paired tests) are stored as the runner stores them."""
    import yaml

    from cortexalign.bench import record_statistics
    from cortexalign.results import ResultsStore

    def make(out: Path, config: dict, rows: list, finish: bool = True) -> ResultsStore:
        store = ResultsStore(Path(out) / "results.duckdb")
        run = store.start_run(yaml.safe_dump(config), "cafe0123")
        for key, what in rows:
            if what == "RUNNING":
                store.start_job(key, run)
            elif isinstance(what, str):
                store.fail_job(key, run, what.removeprefix("FAILED: "))
            else:
                store.record_job(key, run, [_record(**kw) for kw in what])
        record_statistics(store, run)
        if finish:
            store.finish_run(run, "finished")
        return store

    return make
