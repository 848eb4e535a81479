"""Catalogue entries of the Allen Brain Observatory Visual Coding data, from Allen's own S3 bucket.

Source: the public bucket ``s3://allen-brain-observatory`` (AWS Open Data, us-west-2), read over
anonymous HTTPS. We chose it over DANDI because it holds the files in the layout the AllenSDK
caches use and our loaders read: the original NWB 1.0 two-photon files (DANDI:000728 holds NWB 2
re-conversions with other names and another layout) and the Neuropixels session files of the
``EcephysProjectCache``, with the tables beside them. A folder fetched here is therefore also a
valid AllenSDK cache root, and no AllenSDK, ``dandi`` or AWS client is needed. Each file is
checked against its S3 ETag (the MD5 of single-part uploads; multipart ETags when the part size
is a common one) and the server's size.

Layouts (relative to the entry's folder, as in the bucket)::

    allen-ophys/      ophys_experiments.json, experiment_containers.json, [cell_specimens.json],
                      ophys_experiment_data/<ophys_experiment_id>.nwb  (three_session_B only)
    allen-ecephys/    sessions.csv, probes.csv, channels.csv, units.csv,
                      session_<id>/session_<id>.nwb  (brain_observatory_1.1 sessions),
                      natural_scene_templates/natural_scene_<0..117>.tiff
"""

from __future__ import annotations

import csv
import json
from typing import Any

from cortexalign.errors import InputError
from cortexalign.fetch._catalogue import RemoteFile, Source, register_source
from cortexalign.fetch._filters import as_int_list, as_range, as_str_list, check_limit

__all__ = ["ALLEN_BUCKET", "OPHYS_PREFIX", "ECEPHYS_PREFIX", "select_ophys_experiments",
           "select_ecephys_sessions", "N_NATURAL_SCENES"]

ALLEN_BUCKET = "https://allen-brain-observatory.s3.us-west-2.amazonaws.com"
OPHYS_PREFIX = f"{ALLEN_BUCKET}/visual-coding-2p"
ECEPHYS_PREFIX = f"{ALLEN_BUCKET}/visual-coding-neuropixels/ecephys-cache"
N_NATURAL_SCENES = 118
_NS_SESSION = "three_session_B"          # the two-photon session that shows natural scenes
_NS_ECEPHYS = "brain_observatory_1.1"    # the Neuropixels session type that shows them
_TERMS = "Allen Institute Terms of Use (research use, cite)"
_TERMS_URL = "https://alleninstitute.org/terms-of-use/"


def _s3(prefix: str, path: str) -> RemoteFile:
    return RemoteFile(path, f"{prefix}/{path}", server_digest="s3-etag")


def _driver_lines(exp: dict) -> list[str]:
    donor = (exp.get("specimen") or {}).get("donor") or {}
    return [tl.get("name", "") for tl in donor.get("transgenic_lines") or []]


def select_ophys_experiments(experiments: list[dict], filters: dict[str, Any]) -> list[dict]:
    """The natural-scenes experiments of ``ophys_experiments.json`` passing ``filters`` (area,
    cre_line (a driver gene such as ``Cux2`` matches ``Cux2-CreERT2``), depth (min, max) in um,
    experiment ids, limit), sorted by id."""
    areas = as_str_list(filters.get("area"), "area")
    cres = [c.lower() for c in as_str_list(filters.get("cre_line"), "cre_line") or []] or None
    depth = as_range(filters.get("depth"), "depth")
    ids = as_int_list(filters.get("experiment"), "experiment")
    keep = []
    for e in sorted(experiments, key=lambda e: int(e["id"])):
        if e.get("stimulus_name") != _NS_SESSION:
            continue
        if areas and (e.get("targeted_structure") or {}).get("acronym") not in areas:
            continue
        if cres and not any(line.lower().startswith(c) for c in cres
                            for line in _driver_lines(e)):
            continue
        if depth and not depth[0] <= float(e.get("imaging_depth", -1)) <= depth[1]:
            continue
        if ids and int(e["id"]) not in ids:
            continue
        keep.append(e)
    return keep[:check_limit(filters.get("limit"))]


def _plan_ophys(fetcher, filters: dict[str, Any]) -> list[RemoteFile]:
    tables = [_s3(OPHYS_PREFIX, "ophys_experiments.json"),
              _s3(OPHYS_PREFIX, "experiment_containers.json")]
    fetcher.fetch(tables)
    experiments = json.loads(fetcher.local_path(tables[0]).read_text())
    chosen = select_ophys_experiments(experiments, filters)
    if not chosen:
        raise InputError("filters", "filters that match at least one natural-scenes experiment",
                         repr(filters), "loosen them: areas are VISp, VISl, VISal, VISpm, VISam, "
                         "VISrl; cre_line by driver gene (Cux2, Rorb, Sst, Vip...); depth in um")
    files = tables + [_s3(OPHYS_PREFIX, f"ophys_experiment_data/{int(e['id'])}.nwb")
                      for e in chosen]
    if str(filters.get("cells", "")).lower() in ("1", "true", "yes"):
        files.append(_s3(OPHYS_PREFIX, "cell_specimens.json"))
    return files


def _acronyms(text: str) -> list[str]:
    return [a.strip(" '\"") for a in text.strip("[]").split(",") if a.strip(" '\"")]


def select_ecephys_sessions(rows: list[dict], filters: dict[str, Any]) -> list[dict]:
    """The ``brain_observatory_1.1`` sessions of ``sessions.csv`` passing ``filters`` (area: a
    structure recorded in the session; genotype: a substring of ``full_genotype``; session ids;
    limit), sorted by id."""
    areas = as_str_list(filters.get("area"), "area")
    genes = [g.lower() for g in as_str_list(filters.get("genotype"), "genotype") or []]
    ids = as_int_list(filters.get("session"), "session")
    keep = []
    for r in sorted(rows, key=lambda r: int(r["id"])):
        if r.get("session_type") != _NS_ECEPHYS:
            continue
        if areas and not set(areas) & set(_acronyms(r.get("ecephys_structure_acronyms", ""))):
            continue
        if genes and not any(g in r.get("full_genotype", "").lower() for g in genes):
            continue
        if ids and int(r["id"]) not in ids:
            continue
        keep.append(r)
    return keep[:check_limit(filters.get("limit"))]


def _templates() -> list[RemoteFile]:
    return [_s3(ECEPHYS_PREFIX, f"natural_scene_templates/natural_scene_{k}.tiff")
            for k in range(N_NATURAL_SCENES)]


def _plan_ecephys(fetcher, filters: dict[str, Any]) -> list[RemoteFile]:
    tables = [_s3(ECEPHYS_PREFIX, f"{t}.csv") for t in ("sessions", "probes", "channels", "units")]
    fetcher.fetch(tables[:1])
    with open(fetcher.local_path(tables[0]), newline="") as f:
        chosen = select_ecephys_sessions(list(csv.DictReader(f)), filters)
    if not chosen:
        raise InputError("filters", "filters that match at least one brain_observatory_1.1 "
                         "session", repr(filters), "loosen them (area: e.g. VISp; genotype: "
                         "e.g. Sst or wt)")
    sessions = [_s3(ECEPHYS_PREFIX, f"session_{int(r['id'])}/session_{int(r['id'])}.nwb")
                for r in chosen]
    return tables + sessions + _templates()


def _plan_templates(fetcher, filters: dict[str, Any]) -> list[RemoteFile]:
    return _templates()


register_source(Source(
    "allen-ophys", "Allen Brain Observatory Visual Coding two-photon: natural-scenes sessions "
    "(three_session_B NWB files) and the experiment tables", "data",
    "https://observatory.brain-map.org/visualcoding", _TERMS, _TERMS_URL,
    "per experiment: see --dry-run", "neural 'allen-ophys' = allen.ophys_natural_scenes over the fetched "
    "files; stimuli 'allen-ophys' = the template inside them", _plan_ophys,
    filters={"area": "targeted areas, e.g. VISp,VISl", "cre_line": "driver genes, e.g. Cux2,Sst",
             "depth": "imaging depth range in um, e.g. 150-300", "experiment": "experiment ids",
             "limit": "at most this many experiments", "cells": "true: also cell_specimens.json"},
    doc="docs/sources/allen-ophys.md"))

register_source(Source(
    "allen-ecephys", "Allen Visual Coding Neuropixels: natural-scenes sessions "
    "(brain_observatory_1.1 NWB files), unit tables and the 118 scene templates", "data",
    "https://portal.brain-map.org/explore/circuits/visual-coding-neuropixels", _TERMS, _TERMS_URL,
    "~2+ GB per session (32 sessions)",
    "neural 'allen-ecephys' = allen.ecephys_natural_scenes over the fetched sessions; stimuli "
    "'allen-ecephys' = natural_scene_templates", _plan_ecephys,
    filters={"area": "sessions recording this structure, e.g. VISp", "genotype": "e.g. Sst,wt",
             "session": "session ids", "limit": "at most this many sessions"},
    doc="docs/sources/allen-ecephys.md"))

register_source(Source(
    "allen-natural-scenes", "Allen Brain Observatory natural-scenes template: 118 TIFF images "
    "(ids ns000..ns117)", "data", "https://observatory.brain-map.org/visualcoding/stimulus/"
    "natural_scenes", _TERMS, _TERMS_URL, "118 small TIFFs",
    "stimuli 'allen-natural-scenes' = allen.natural_scenes over the folder", _plan_templates,
    doc="docs/sources/allen-ecephys.md"))
