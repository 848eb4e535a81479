"""Catalogue entries as config sources: ``source: allen-ophys`` instead of a path.

Importing this module registers the data entries as neural datasets (``NEURAL``) and stimulus
sets (``BUNDLED``) under their catalogue names. Their options mix the entry's fetch filters
(``area``, ``cre_line``, ``subject``...), the fetch settings ``to`` and ``agree_terms``, and the
loader's own options (``statistic``, ``window``...)::

    stimuli: {source: allen-ophys}               # the template of the fetched experiments
    neural:
      - source: allen-ophys
        options: {area: [VISp, VISl], cre_line: Cux2, statistic: mean}
    models:
      - {name: sam_vit_b, weights: sam-vit-b}    # a weights entry instead of a path

``fetch_config_sources(cfg)`` (called by ``cortexalign run`` before it starts) fetches what is
missing; offline it fails at once with every ``cortexalign fetch`` command that would get it.
Loading an entry's dataset fetches it too (with no progress bars), so the Python API works alike.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cortexalign.errors import InputError
from cortexalign.fetch._api import FetchResult, fetch, get_source
from cortexalign.fetch._env import source_dir
from cortexalign.fetch._http import OfflineError
from cortexalign.fetch._weights import WEIGHT_FILES
from cortexalign.neural import NEURAL
from cortexalign.stimuli import BUNDLED, StimulusSet

__all__ = ["CONFIG_SOURCES", "fetch_config_sources", "split_options"]

_SETTINGS = ("to", "agree_terms")
_NSD_SHARED = ("subject", "sessions", "space", "betas", "rois")


@dataclass(frozen=True)
class ConfigSource:
    """How a config uses a catalogue entry: its neural and stimulus loaders (either may be
    ``None``), each ``loader(result, filters, options)`` over a finished fetch."""

    neural: Callable[[FetchResult, dict, dict], Any] | None
    stimuli: Callable[[FetchResult, dict, dict], StimulusSet] | None
    citation: str


def split_options(name: str, options: dict[str, Any]) -> tuple[dict, dict, dict]:
    """``options`` of a config source -> (fetch filters, fetch settings, loader options). NSD's
    subject, sessions, space, betas and rois go to both (and the atlas ``within`` is fetched)."""
    valid = get_source(name).filters
    shared = _NSD_SHARED if name == "nsd" else ()
    filters = {k: v for k, v in options.items() if k in valid}
    settings = {k: v for k, v in options.items() if k in _SETTINGS}
    loader = {k: v for k, v in options.items()
              if (k not in valid or k in shared) and k not in _SETTINGS}
    within = loader.get("within", "nsdgeneral")
    if name == "nsd" and "rois" in filters and within:
        from cortexalign.fetch._filters import as_str_list

        filters["rois"] = list(dict.fromkeys(as_str_list(filters["rois"], "rois") + [within]))
    return filters, settings, loader


def _fetch(name: str, filters: dict, settings: dict, progress=None) -> FetchResult:
    return fetch(name, filters, to=settings.get("to"),
                 agree_terms=bool(settings.get("agree_terms", False)), progress=progress)


def _nwb(result: FetchResult) -> list[Path]:
    return [f.path for f in result.files if f.path.suffix == ".nwb"]


def _ophys_neural(result: FetchResult, filters: dict, options: dict):
    from cortexalign.neural.allen import load_ophys_natural_scenes

    return load_ophys_natural_scenes(_nwb(result), **options)


def _ophys_stimuli(result: FetchResult, filters: dict, options: dict) -> StimulusSet:
    return BUNDLED.get("allen.natural_scenes")(path=str(_nwb(result)[0]), **options)


def _ecephys_neural(result: FetchResult, filters: dict, options: dict):
    return NEURAL.get("allen.ecephys_natural_scenes")(path=_nwb(result), **options)


def _template_stimuli(result: FetchResult, filters: dict, options: dict) -> StimulusSet:
    folder = result.root / "natural_scene_templates"
    return BUNDLED.get("allen.natural_scenes")(path=str(folder), **options)


def _nsd_args(filters: dict, options: dict) -> dict:
    from cortexalign.fetch._filters import as_int_list, as_str_list

    kw = dict(options)
    subjects = as_int_list(kw.pop("subject", 1), "subject")
    if len(subjects) != 1:
        raise InputError("subject", "one NSD subject per neural target", repr(subjects),
                         "give one target per subject")
    kw["subject"] = subjects[0]
    kw["sessions"] = as_int_list(kw.get("sessions", 1), "sessions")
    if "rois" in kw:
        kw["rois"] = [r for r in as_str_list(kw["rois"], "rois") if r != kw.get("within",
                                                                              "nsdgeneral")]
    if "format" in filters:
        kw["file_format"] = filters["format"]
    if kw.get("space") == "fsaverage":
        kw["file_format"] = "mgh"
    return kw


def _nsd_neural(result: FetchResult, filters: dict, options: dict):
    from cortexalign.neural import load_nsd

    return load_nsd(result.root, **_nsd_args(filters, options))


def _nsd_stimuli(result: FetchResult, filters: dict, options: dict) -> StimulusSet:
    from cortexalign.neural.fmri.nsd import TRIALS_PER_SESSION, read_nsd_design
    from cortexalign.neural.fmri.nsd_stimuli import load_nsd_stimuli

    kw = _nsd_args(filters, options)
    design = read_nsd_design(result.root / "nsddata/experiments/nsd/nsd_expdesign.mat",
                             kw["subject"])
    trials = np.concatenate([np.arange((s - 1) * TRIALS_PER_SESSION, s * TRIALS_PER_SESSION)
                             for s in kw["sessions"]])
    ids = np.unique(design[trials[trials < len(design)]])
    return load_nsd_stimuli(result.root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5", ids)


_DE_VRIES = ("de Vries, Lecoq, Buice et al. (2020). A large-scale standardized physiological "
             "survey reveals functional organization of the mouse visual cortex. Nat. Neurosci. "
             "23:138-151 (Allen Brain Observatory)")
_SIEGLE = ("Siegle, Jia, Durand et al. (2021). Survey of spiking in the mouse visual system "
           "reveals functional hierarchy. Nature 592:86-92")
_NSD = ("Allen, St-Yves, Wu et al. (2022). A massive 7T fMRI dataset to bridge cognitive "
        "neuroscience and artificial intelligence. Nat. Neurosci. 25:116-126")

CONFIG_SOURCES: dict[str, ConfigSource] = {
    "allen-ophys": ConfigSource(_ophys_neural, _ophys_stimuli, _DE_VRIES),
    "allen-ecephys": ConfigSource(_ecephys_neural, _template_stimuli, _SIEGLE),
    "allen-natural-scenes": ConfigSource(None, _template_stimuli, _DE_VRIES),
    "nsd": ConfigSource(_nsd_neural, _nsd_stimuli, _NSD),
}


def _stimuli_filters(name: str, filters: dict) -> dict:
    """Stimuli of ``allen-ophys`` without filters: a fetched experiment, or the first one."""
    if name != "allen-ophys" or filters:
        return filters
    done = sorted((source_dir(name) / "ophys_experiment_data").glob("*.nwb"))
    return {"experiment": [int(done[0].stem)]} if done else {"limit": 1}


def _make_loader(name: str, kind: str):
    spec = CONFIG_SOURCES[name]
    use = spec.neural if kind == "neural" else spec.stimuli

    def load(**options):
        filters, settings, loader_options = split_options(name, options)
        if kind == "stimuli":
            filters = _stimuli_filters(name, filters)
            if name == "nsd":
                filters = {**filters, "parts": "design,stimuli"}
        return use(_fetch(name, filters, settings), filters, loader_options)

    load.__doc__ = f"{kind} of catalogue entry {name!r} (fetched on first use)"
    return load


for _name, _spec in CONFIG_SOURCES.items():
    _title = get_source(_name).title
    if _spec.neural is not None and _name not in NEURAL:
        NEURAL.add(_name, _make_loader(_name, "neural"), citation=_spec.citation,
                   stimuli=_name, description=f"catalogue entry (cortexalign fetch): {_title}")
    if _spec.stimuli is not None and _name not in BUNDLED:
        BUNDLED.add(_name, _make_loader(_name, "stimuli"), citation=_spec.citation,
                    description=f"catalogue entry (cortexalign fetch): {_title}")


def _needs(cfg) -> list[tuple[str, dict, dict, str]]:
    """(entry, filters, settings, where) of every catalogue source of ``cfg``, neural first."""
    out = []
    for i, spec in enumerate(cfg.neural):
        if spec.source in CONFIG_SOURCES and CONFIG_SOURCES[spec.source].neural is not None:
            f, s, _ = split_options(spec.source, dict(spec.options))
            out.append((spec.source, f, s, f"neural[{i}]"))
    if cfg.stimuli.source in CONFIG_SOURCES:
        f, s, _ = split_options(cfg.stimuli.source, dict(cfg.stimuli.options))
        out.append((cfg.stimuli.source, f, s, "stimuli"))
    for i, m in enumerate(cfg.models):
        if m.weights and str(m.weights) in WEIGHT_FILES and not Path(m.weights).exists():
            out.append((str(m.weights), {}, {}, f"models[{i}].weights"))
    return out


def fetch_config_sources(cfg, console=None) -> list[FetchResult]:
    """Fetch every catalogue entry ``cfg`` names that is not complete yet (neural sources,
    then stimuli, then model weights), with progress bars on ``console`` when given. Offline,
    raises one ``OfflineError`` listing the command of every entry still missing, before any
    download."""
    needs = _needs(cfg)
    if not needs:
        return []
    progress = None
    if console is not None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            console=console, transient=True)
    with progress if progress is not None else nullcontext():
        return _fetch_needs(needs, progress)


def _fetch_needs(needs, progress) -> list[FetchResult]:
    results, offline = [], []
    for name, filters, settings, where in needs:
        if where == "stimuli":
            filters = _stimuli_filters(name, filters)
            if name == "nsd":
                filters = {**filters, "parts": "design,stimuli"}
        try:
            results.append(_fetch(name, filters, settings, progress))
        except OfflineError as err:
            offline.append((where, err))
    if offline:
        cmds = "; ".join(f"`{err.command}` ({where})" for where, err in offline)
        first = offline[0][1]
        raise OfflineError(first.url, f"the config names catalogue data not fetched yet, and "
                           f"{first.what.split(' but ')[-1]}", f"run {cmds} where the network "
                           "is reachable (or with --mirror), then rerun", first.command)
    return results
