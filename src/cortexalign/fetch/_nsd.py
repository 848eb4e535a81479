"""The Natural Scenes Dataset (Allen et al. 2022) from its public S3 bucket, in the bucket's layout.

``s3://natural-scenes-dataset`` is read over anonymous HTTPS; the folder it fills is an NSD root
that ``cortexalign.neural.load_nsd`` reads as is. NSD's terms must be accepted explicitly
(``--agree-terms``; ``agree_terms: true`` in a config): nothing downloads without it.

Parts (``parts=``): ``design`` (the trial -> image design and the stimulus table), ``rois`` (ROI
volumes or fsaverage labels and their label tables), ``betas`` (single-trial betas of the
sessions asked for, with NSD's ncsnr), ``stimuli`` (the 73,000 images, 39.6 GB) and
``surfaces`` (the subject's FreeSurfer surfaces; fsaverage's too in that space). File names
follow the NSD data manual; every file is checked against its S3 ETag and size.
"""

from __future__ import annotations

from typing import Any

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.fetch._catalogue import RemoteFile, Source, register_source
from cortexalign.fetch._filters import as_int_list, as_str_list

__all__ = ["NSD_BUCKET", "NSD_SESSIONS", "NSD_PARTS", "nsd_files"]

NSD_BUCKET = "https://natural-scenes-dataset.s3.amazonaws.com"
#: scan sessions of each subject (1-based): subjects 1, 2, 5, 7 did 40; 3, 6 did 32; 4, 8 did 30
NSD_SESSIONS = {1: 40, 2: 40, 3: 32, 4: 30, 5: 40, 6: 32, 7: 40, 8: 30}
NSD_PARTS = ("design", "rois", "betas", "stimuli", "surfaces")
SPACES = ("func1pt8mm", "func1mm", "fsaverage")
_DEFAULT_ROIS = ("nsdgeneral", "prf-visualrois", "floc-faces", "floc-bodies", "floc-places",
                 "floc-words", "streams")
_LABELLED = {"prf-visualrois", "prf-eccrois", "floc-faces", "floc-bodies", "floc-places",
             "floc-words", "streams", "Kastner2015", "HCP_MMP1"}
_HEMIS = ("lh", "rh")
_SURFACES = ("white", "pial", "inflated", "sphere", "sphere.reg", "curv", "sulc")
_GB = 1_000_000_000
AGREEMENT = ("The Natural Scenes Dataset is shared under the NSD Terms and Conditions: use for "
             "research, no attempt to identify participants, no redistribution of the data, and "
             "citation of Allen et al. (2022), Nature Neuroscience 25:116-126. Read them, and "
             "complete NSD's data access form, at https://naturalscenesdataset.org before use.")


def _f(path: str, hint: int | None = None) -> RemoteFile:
    return RemoteFile(path, f"{NSD_BUCKET}/{path}", server_digest="s3-etag", size_hint=hint)


def _choice(value: Any, name: str, choices: tuple[str, ...], default: str) -> str:
    value = default if value in (None, "") else str(value)
    if value not in choices:
        raise UnknownNameError(f"NSD {name}", value, choices)
    return value


def nsd_files(filters: dict[str, Any]) -> list[RemoteFile]:
    """The NSD files ``filters`` ask for (see the module docstring and ``Source.filters``)."""
    subjects = as_int_list(filters.get("subject"), "subject") or [1]
    space = _choice(filters.get("space"), "space", SPACES, "func1pt8mm")
    fmt = "mgh" if space == "fsaverage" else _choice(filters.get("format"), "format",
                                                      ("nifti", "hdf5"), "nifti")
    betas = str(filters.get("betas") or "betas_fithrf_GLMdenoise_RR")
    parts = as_str_list(filters.get("parts"), "parts") or ["design", "rois", "betas"]
    for p in parts:
        if p not in NSD_PARTS:
            raise UnknownNameError("NSD part", p, NSD_PARTS)
    rois = as_str_list(filters.get("rois"), "rois") or list(_DEFAULT_ROIS)
    files: list[RemoteFile] = []
    if "design" in parts:
        files += [_f("nsddata/experiments/nsd/nsd_expdesign.mat"),
                  _f("nsddata/experiments/nsd/nsd_stim_info_merged.csv")]
    if "stimuli" in parts:
        files.append(_f("nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5", int(39.6 * _GB)))
    for s in subjects:
        if s not in NSD_SESSIONS:
            raise InputError("subject", "NSD subjects 1-8", repr(s), "e.g. subject=1")
        subj = f"subj{s:02d}"
        sessions = as_int_list(filters.get("sessions"), "sessions") or [1]
        bad = [n for n in sessions if not 1 <= n <= NSD_SESSIONS[s]]
        if bad:
            raise InputError("sessions", f"sessions 1-{NSD_SESSIONS[s]} for subject {s}",
                             repr(bad), f"e.g. sessions=1-{NSD_SESSIONS[s]}")
        if "rois" in parts:
            files += _roi_files(subj, space, rois)
        if "betas" in parts:
            files += _beta_files(subj, space, betas, fmt, sessions)
        if "surfaces" in parts:
            files += [_f(f"nsddata/freesurfer/{subj}/surf/{h}.{k}")
                      for h in _HEMIS for k in _SURFACES]
    if "surfaces" in parts and space == "fsaverage":
        files += [_f(f"nsddata/freesurfer/fsaverage/surf/{h}.{k}") for h in _HEMIS
                  for k in ("white", "pial", "inflated", "sphere", "curv", "sulc")]
    return list({f.path: f for f in files}.values())


def _roi_files(subj: str, space: str, rois: list[str]) -> list[RemoteFile]:
    if space == "fsaverage":
        label = "nsddata/freesurfer/fsaverage/label"
        files = [_f(f"{label}/{h}.{a}.mgz") for a in rois for h in _HEMIS]
    else:
        label = f"nsddata/freesurfer/{subj}/label"
        files = [_f(f"nsddata/ppdata/{subj}/{space}/roi/{a}.nii.gz") for a in rois]
    return files + [_f(f"{label}/{a}.mgz.ctab") for a in rois if a in _LABELLED]


def _beta_files(subj: str, space: str, betas: str, fmt: str, sessions: list[int]
                ) -> list[RemoteFile]:
    d = f"nsddata_betas/ppdata/{subj}/{space}/{betas}"
    if space == "fsaverage":
        return [_f(f"{d}/{h}.betas_session{n:02d}.mgh", int(0.5 * _GB)) for n in sessions
                for h in _HEMIS] + [_f(f"{d}/{h}.ncsnr.mgh") for h in _HEMIS]
    ext = "nii.gz" if fmt == "nifti" else "hdf5"
    hint = int((1.0 if space == "func1pt8mm" else 4.0) * _GB)
    return [_f(f"{d}/betas_session{n:02d}.{ext}", hint) for n in sessions] + \
        [_f(f"{d}/ncsnr.nii.gz")]


def _plan(fetcher, filters: dict[str, Any]) -> list[RemoteFile]:
    return nsd_files(filters)


register_source(Source(
    "nsd", "Natural Scenes Dataset: 7T fMRI single-trial betas (subject space or fsaverage), "
    "ROIs, design, the 73k stimuli, FreeSurfer surfaces", "data",
    "https://naturalscenesdataset.org", "NSD Terms and Conditions (--agree-terms)",
    "https://naturalscenesdataset.org", "~1 GB/session of betas; stimuli 39.6 GB",
    "neural 'nsd' = cortexalign.neural.load_nsd(root); stimuli 'nsd' = load_nsd_stimuli "
    "(nsd_stimuli.hdf5)", _plan,
    filters={"subject": "1-8, e.g. 1 or 1,2", "sessions": "e.g. 1-40 (default 1)",
             "space": "func1pt8mm (default), func1mm or fsaverage",
             "format": "nifti (default) or hdf5 (volumes)",
             "betas": "betas_fithrf_GLMdenoise_RR (default) or another NSD beta version",
             "parts": "design,rois,betas (default); also stimuli, surfaces",
             "rois": "atlases, e.g. nsdgeneral,prf-visualrois,floc-faces"},
    agreement=AGREEMENT, doc="docs/sources/nsd.md"))
