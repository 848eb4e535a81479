"""MkDocs hooks: generate the pages that must never drift from the code, before the build.

- ``reference/api/*.md``: one page per public package, ``::: cortexalign.<package>`` for
  mkdocstrings, listing the names in the package's ``__all__``.
- ``reference/config.md``: every key of every config (run, train-snn, train-aligned,
  sae-brainmap) with its type, default and description, read from the pydantic models.
- ``gallery/*.md``: every script in ``examples/`` run with ``--out`` into the page's folder; the
  page shows the script's docstring, its code, what it printed and every figure it wrote. A
  failing example fails the build.

The generated files live under ``docs/_generated`` (ignored by git) and are re-made at every
build; set ``CORTEXALIGN_DOCS_SKIP_GALLERY=1`` for a quick build without running the examples.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import time
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GEN = DOCS / "_generated"

#: (page title, module) of the API reference, in reading order
API_PACKAGES = [
    ("Top level", "cortexalign"), ("Stimuli", "cortexalign.stimuli"),
    ("Models", "cortexalign.models"), ("Attention maps", "cortexalign.models.attention"),
    ("Features", "cortexalign.features"), ("Neural data", "cortexalign.neural"),
    ("fMRI", "cortexalign.neural.fmri"), ("RDM kernel", "cortexalign.rdm"),
    ("Metrics", "cortexalign.metrics"), ("Statistics", "cortexalign.stats"),
    ("Second-order analyses", "cortexalign.analyses"), ("Runs", "cortexalign.bench"),
    ("Results store", "cortexalign.results"), ("Reports", "cortexalign.reports"),
    ("Spiking models", "cortexalign.spiking"), ("Sparse autoencoders", "cortexalign.sae"),
    ("Alignment training", "cortexalign.align"), ("Segmentation", "cortexalign.segmentation"),
    ("Fetching data and weights", "cortexalign.fetch"), ("Studies", "cortexalign.studies"),
    ("Interop", "cortexalign.interop"), ("CPU threads", "cortexalign.compute"),
    ("Kept results", "cortexalign.memo"),
    ("Errors", "cortexalign.errors"), ("Registry", "cortexalign.registry"),
]

#: (title, "module:Model", command that reads it)
CONFIGS = [
    ("Experiment (`cortexalign run`)", "cortexalign.bench:ExperimentConfig", "cortexalign run"),
    ("Spiking training (`cortexalign train-snn`)", "cortexalign.spiking.train:TrainConfig",
     "cortexalign train-snn"),
    ("Alignment-regularised training (`cortexalign train-aligned`)",
     "cortexalign.align.config:AlignConfig", "cortexalign train-aligned"),
    ("SAE-BrainMap (`cortexalign sae-brainmap`)", "cortexalign.sae.pipeline:BrainMapConfig",
     "cortexalign sae-brainmap"),
]


def _slug(module: str) -> str:
    return module.replace("cortexalign.", "").replace("cortexalign", "index").replace(".", "-")


def _api_pages() -> None:
    out = GEN / "api"
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# API reference", "",
             "Generated from the docstrings of every public name (each package's `__all__`).", ""]
    for title, module in API_PACKAGES:
        try:
            mod = importlib.import_module(module)
        except ImportError:  # a package a later version adds or removes
            continue
        names = [n for n in getattr(mod, "__all__", []) if not n.startswith("_")]
        page = out / f"{_slug(module)}.md"
        members = "\n".join(f"        - {n}" for n in names)
        page.write_text(f"# {title}: `{module}`\n\n::: {module}\n    options:\n"
                        f"      show_submodules: false\n      members:\n{members}\n"
                        if names else f"# {title}: `{module}`\n\n::: {module}\n")
        lines.append(f"- [{title}]({page.name}) — `{module}` ({len(names)} names)")
    (out / "index.md").write_text("\n".join(lines) + "\n")


def _type_name(annotation: object) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    text = text or str(annotation).replace("typing.", "")
    return text.replace("NoneType", "None").replace("|", "\\|")


def _default(field) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
    else:
        value = field.default
    if value is PydanticUndefined:
        return "**required**"
    return f"`{value!r}`".replace("|", "\\|")


def _model_tables(model, prefix: str, seen: set, out: list[str]) -> None:
    from pydantic import BaseModel

    rows, nested = [], []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        desc = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
        for arg in (field.annotation, *typing.get_args(field.annotation)):
            for sub in (arg, *typing.get_args(arg)):
                if isinstance(sub, type) and issubclass(sub, BaseModel) and sub not in seen:
                    seen.add(sub)
                    nested.append((key, sub))
    out += ["| key | type | default | description |", "|---|---|---|---|", *rows, ""]
    for key, sub in nested:
        out += [f"### `{key}` ({sub.__name__})", ""]
        doc = " ".join((sub.__doc__ or "").split())
        if doc:
            out += [doc, ""]
        _model_tables(sub, f"{key}.", seen, out)


def _config_page() -> None:
    out = ["# Configuration reference", "",
           "Every key of every config file, generated from the pydantic models the commands "
           "validate with, so it cannot drift from the code. `cortexalign config keys` prints "
           "the experiment's keys in a terminal.", ""]
    for title, path, command in CONFIGS:
        module, _, name = path.partition(":")
        try:
            model = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        out += [f"## {title}", "", f"Read by `{command}`. "
                + " ".join((model.__doc__ or "").split()), ""]
        _model_tables(model, "", {model}, out)
    (GEN / "config.md").write_text("\n".join(out) + "\n")


def _gallery() -> None:
    out = GEN / "gallery"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    index = ["# Gallery", "",
             "Every script in `examples/`, run when this site was built (2 CPU cores, no GPU): "
             "its code, what it printed and the figures it wrote.", ""]
    env = dict(os.environ, MPLBACKEND="Agg", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    for script in sorted((ROOT / "examples").glob("[0-9][0-9]_*.py")):
        stem = script.stem
        folder = out / stem
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script), "--out", str(folder)], env=env,
                              capture_output=True, text=True, timeout=600, cwd=ROOT)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"example {script.name} failed (exit {proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        source = script.read_text()
        doc = source.split('"""')[1].strip() if source.startswith('"""') else stem
        title, _, body = doc.partition("\n")
        figures = sorted(folder.glob("*.png"))
        body = body.strip().replace("[", "\\[")  # "[--out DIR]" is usage, not a reference
        page = [f"# {title}", "", body, "",
                f"*Ran in {seconds:.0f} s when this page was built.* "
                f"Run it yourself: `python examples/{script.name}`", ""]
        for fig in figures:
            page += [f"![{fig.stem}]({stem}/{fig.name})", ""]
        printed = proc.stdout.strip().replace(str(folder), f"examples-out/{stem}")
        page += ["## Output", "", "```text", printed or "(nothing printed)", "```", "",
                 "## Code", "", "```python", source.rstrip(), "```", ""]
        (out / f"{stem}.md").write_text("\n".join(page))
        index.append(f"- [{title}]({stem}.md) ({seconds:.0f} s)")
    (out / "index.md").write_text("\n".join(index) + "\n")


def _studies_page() -> None:
    from cortexalign.studies import list_studies

    lines = ["# Studies", "",
             "Each study reproduces a published analysis with one command, on the real data "
             "(`cortexalign fetch`) or on simulated data in the real file layouts with planted "
             "structure (`cortexalign simulate NAME`), so that its answer can be checked. "
             "`cortexalign studies` lists them.", "",
             "| study | reproduces | commands | guide |", "|---|---|---|---|"]
    for st in list_studies():
        guide = DOCS / "studies" / f"{st.name}.md"
        link = f"[guide](../studies/{st.name}.md)" if guide.exists() else "-"
        sim = f"`cortexalign simulate {st.name} --out sim --size cpu`<br>" if st.simulate else ""
        data = " --data sim" if st.simulate else ""
        lines.append(f"| `{st.name}` | {st.title} ({st.citation}) | {sim}`cortexalign study "
                     f"{st.name}{data} --out run --subset cpu` | {link} |")
    (GEN / "studies.md").write_text("\n".join(lines) + "\n")


def on_pre_build(config, **kwargs) -> None:  # noqa: ARG001 - the mkdocs hook signature
    """Write the generated pages into docs/_generated before MkDocs collects the files."""
    sys.path.insert(0, str(ROOT / "src"))
    GEN.mkdir(exist_ok=True)
    _api_pages()
    _config_page()
    _studies_page()
    if os.environ.get("CORTEXALIGN_DOCS_SKIP_GALLERY") != "1":
        _gallery()
    elif not (GEN / "gallery" / "index.md").exists():
        (GEN / "gallery").mkdir(exist_ok=True)
        (GEN / "gallery" / "index.md").write_text(
            "# Gallery\n\nBuilt without running the examples (CORTEXALIGN_DOCS_SKIP_GALLERY=1).\n")
