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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cortexalign.errors import InputError
from cortexalign.fetch._api import FetchResult, get_source
from cortexalign.fetch._config import (
    CONFIG_KINDS,
    fetch_config_sources,
    fetch_source,
    split_options,
    stimuli_filters,
)
from cortexalign.neural import NEURAL
from cortexalign.stimuli import BUNDLED, StimulusSet

__all__ = ["CONFIG_SOURCES", "fetch_config_sources", "split_options"]



@dataclass(frozen=True)
class ConfigSource:
    """How a config uses a catalogue entry: its neural and stimulus loaders (either may be
    ``None``), each ``loader(result, filters, options)`` over a finished fetch."""

    neural: Callable[[FetchResult, dict, dict], Any] | None
    stimuli: Callable[[FetchResult, dict, dict], StimulusSet] | None
    citation: str


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

CONFIG_SOURCES: dict[str, ConfigSource] = {  # the loaders of _config.CONFIG_KINDS
    "allen-ophys": ConfigSource(_ophys_neural, _ophys_stimuli, _DE_VRIES),
    "allen-ecephys": ConfigSource(_ecephys_neural, _template_stimuli, _SIEGLE),
    "allen-natural-scenes": ConfigSource(None, _template_stimuli, _DE_VRIES),
    "nsd": ConfigSource(_nsd_neural, _nsd_stimuli, _NSD),
}


def _make_loader(name: str, kind: str):
    spec = CONFIG_SOURCES[name]
    use = spec.neural if kind == "neural" else spec.stimuli

    def load(**options):
        filters, settings, loader_options = split_options(name, options)
        if kind == "stimuli":
            filters = stimuli_filters(name, filters)
        return use(fetch_source(name, filters, settings), filters, loader_options)

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

assert set(CONFIG_SOURCES) == set(CONFIG_KINDS), (set(CONFIG_SOURCES), set(CONFIG_KINDS))
