"""Which catalogue entries a config names, and fetching them before a run: light enough for
the command line to call before it loads torch (offline, ``cortexalign run`` fails in well under a
second). Works on a validated ``ExperimentConfig`` or on the raw YAML mapping."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from cortexalign.fetch._api import FetchResult, fetch, get_source, is_weights_entry
from cortexalign.fetch._env import source_dir
from cortexalign.fetch._filters import as_str_list
from cortexalign.fetch._http import OfflineError

__all__ = ["CONFIG_KINDS", "split_options", "stimuli_filters", "fetch_source", "config_needs",
           "fetch_config_sources", "prefetch_config_file"]

#: catalogue entries usable in a config -> the roles they can play
CONFIG_KINDS: dict[str, tuple[str, ...]] = {
    "allen-ophys": ("neural", "stimuli"), "allen-ecephys": ("neural", "stimuli"),
    "allen-natural-scenes": ("stimuli",), "nsd": ("neural", "stimuli")}
_SETTINGS = ("to", "agree_terms")
_NSD_SHARED = ("subject", "sessions", "space", "betas", "rois")


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
        filters["rois"] = list(dict.fromkeys(as_str_list(filters["rois"], "rois") + [within]))
    return filters, settings, loader


def stimuli_filters(name: str, filters: dict) -> dict:
    """The filters of an entry used as stimuli: ``allen-ophys`` without filters reads the
    template of a fetched experiment (else fetches the first one); NSD fetches design and
    images."""
    if name == "nsd":
        return {**filters, "parts": "design,stimuli"}
    if name != "allen-ophys" or filters:
        return filters
    done = sorted((source_dir(name) / "ophys_experiment_data").glob("*.nwb"))
    return {"experiment": [int(done[0].stem)]} if done else {"limit": 1}


def fetch_source(name: str, filters: dict, settings: dict, progress=None) -> FetchResult:
    """``fetch`` with a config source's settings (``to``, ``agree_terms``)."""
    return fetch(name, filters, to=settings.get("to"),
                 agree_terms=bool(settings.get("agree_terms", False)), progress=progress)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def config_needs(cfg: Any) -> list[tuple[str, dict, dict, str]]:
    """(entry, filters, settings, where) of every catalogue source ``cfg`` names (neural
    sources, then stimuli, then model weights); malformed parts are left to validation."""
    out = []
    for i, spec in enumerate(_get(cfg, "neural") or []):
        src = _get(spec, "source")
        if isinstance(src, str) and "neural" in CONFIG_KINDS.get(src, ()):
            f, s, _ = split_options(src, dict(_get(spec, "options") or {}))
            out.append((src, f, s, f"neural[{i}]"))
    stim = _get(cfg, "stimuli") or {}
    src = _get(stim, "source")
    if isinstance(src, str) and "stimuli" in CONFIG_KINDS.get(src, ()):
        f, s, _ = split_options(src, dict(_get(stim, "options") or {}))
        same = next((n for n in out if n[0] == src), None)
        if not f and same is not None and src != "nsd":  # the neural data's files hold them
            f, s = same[1], same[2]
        out.append((src, stimuli_filters(src, f), s, "stimuli"))
    for i, m in enumerate(_get(cfg, "models") or []):
        w = _get(m, "weights")
        if isinstance(w, str) and is_weights_entry(w):
            out.append((w, {}, {}, f"models[{i}].weights"))
    return out


def fetch_config_sources(cfg: Any, console=None) -> list[FetchResult]:
    """Fetch every catalogue entry ``cfg`` names that is not complete yet, with progress bars on
    ``console`` when given. Offline, raises one ``OfflineError`` listing the command of every
    entry still missing, before any download."""
    needs = config_needs(cfg)
    if not needs:
        return []
    progress = None
    if console is not None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            console=console, transient=True)
    results, offline = [], []
    with progress if progress is not None else nullcontext():
        for name, filters, settings, where in needs:
            try:
                results.append(fetch_source(name, filters, settings, progress))
            except OfflineError as err:
                offline.append((where, err))
    if offline:
        wheres: dict[str, list[str]] = {}
        for where, err in offline:
            wheres.setdefault(err.command, []).append(where)
        cmds = "; ".join(f"`{c}` ({', '.join(w)})" for c, w in wheres.items())
        first = offline[0][1]
        raise OfflineError(first.url, f"the config names catalogue data not fetched yet, and "
                           f"{first.what.split(' but ')[-1]}", f"run {cmds} where the network "
                           "is reachable (or with --mirror), then rerun", first.command)
    return results


def prefetch_config_file(path: str | Path, console=None) -> list[FetchResult]:
    """``fetch_config_sources`` on a YAML file before it is validated (the command line calls
    it before loading torch); a file that cannot be read is left to the config loader."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return []
    return fetch_config_sources(data, console) if isinstance(data, dict) else []
