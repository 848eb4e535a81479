"""The NSD images as a ``StimulusSet``: ``nsd_stimuli.hdf5`` read lazily through h5py.

NSD ships its 73,000 images as ``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5``, dataset
``imgBrick`` of shape (73000, 425, 425, 3) uint8, row i holding the image of 1-based 73k id
i + 1. Stimulus ids are ``nsd%05d`` of that 1-based id, the same ids ``load_nsd`` gives its
responses, so a subject's images are ``load_nsd_stimuli(path, responses["stimulus"].values)``.

Nothing is read up front: each image is one h5py slice, read when a model asks for it (the file is
opened per read, so the set can be used from worker threads and pickled file handles never exist).
The content hash (the feature-cache key part) is computed from the ids and pixels of the selected
images the first time it is needed, as for any ``StimulusSet``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cortexalign.errors import InputError
from cortexalign.neural.fmri.nsd import nsd_stimulus_id
from cortexalign.stimuli import StimulusSet

__all__ = ["NSD_STIMULI_DATASET", "load_nsd_stimuli", "nsd_id_from_stimulus_id"]

NSD_STIMULI_DATASET = "imgBrick"
_ID = re.compile(r"^nsd(\d{5})$")


def nsd_id_from_stimulus_id(stimulus_id: str) -> int:
    """The 1-based 73k id of a stimulus id ``nsd%05d`` (the inverse of ``nsd_stimulus_id``)."""
    m = _ID.match(str(stimulus_id))
    if m is None or int(m.group(1)) < 1:
        raise InputError("stimulus_ids", "NSD stimulus ids 'nsd00001'..'nsd73000' (as load_nsd "
                         "names them)", repr(stimulus_id), "pass the responses' stimulus ids or "
                         "1-based 73k ids")
    return int(m.group(1))


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # an optional dependency, like nibabel for the betas
        raise ImportError("the NSD stimuli loader needs h5py: pip install h5py") from exc
    return h5py


def load_nsd_stimuli(path: str | Path, stimulus_ids: Sequence[str | int] | None = None,
                     dataset: str = NSD_STIMULI_DATASET, name: str | None = None) -> StimulusSet:
    """The NSD images of ``stimulus_ids`` (in that order) from ``nsd_stimuli.hdf5``.

    Parameters
    ----------
    path : the HDF5 file; ``dataset`` is (N, H, W, 3) uint8, row i = 1-based 73k id i + 1
        (NSD: (73000, 425, 425, 3)).
    stimulus_ids : ids ``nsd%05d`` or 1-based 73k ids (ints); None: every row of the file.
    dataset : the dataset name inside the file.
    name : the set's name (default ``nsd`` plus the count).

    Returns
    -------
    StimulusSet with ids ``nsd%05d`` and metadata ``nsd_id`` (the 1-based 73k id).
    """
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise InputError("path", "the NSD stimulus file nsd_stimuli.hdf5", repr(str(path)),
                         "download nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5 or fix the path")
    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise InputError("dataset", f"a dataset of {path.name} ({sorted(f.keys())})",
                                 repr(dataset), "pass dataset='imgBrick' (NSD's name)")
            shape, dtype = f[dataset].shape, f[dataset].dtype
    except OSError as exc:
        raise InputError("path", "a readable HDF5 file", f"{str(path)!r} ({exc})",
                         "re-download the file; it may be truncated") from None
    if len(shape) != 4 or shape[3] not in (1, 3) or dtype != np.uint8:
        raise InputError(dataset, "(N, H, W, 3) uint8 images (NSD: (73000, 425, 425, 3))",
                         f"shape {shape}, dtype {dtype}", "point at NSD's imgBrick dataset")
    if stimulus_ids is None:
        nsd_ids = np.arange(1, shape[0] + 1)
    else:
        nsd_ids = np.asarray([int(s) if isinstance(s, int | np.integer) else
                              nsd_id_from_stimulus_id(s) for s in stimulus_ids], np.int64)
    outside = nsd_ids[(nsd_ids < 1) | (nsd_ids > shape[0])]
    if len(outside):
        raise InputError("stimulus_ids", f"73k ids in 1..{shape[0]} (the rows of {path.name})",
                         f"{len(outside)} outside (first: {nsd_stimulus_id(int(outside[0]))})",
                         "use the stimulus file that matches the responses (NSD: all 73,000 images)")
    rows = tuple(int(i) - 1 for i in nsd_ids)

    def load(i: int) -> np.ndarray:
        with h5py.File(path, "r") as f:
            return np.asarray(f[dataset][rows[i]])

    return StimulusSet(name=name or f"nsd{len(rows)}",
                       ids=tuple(nsd_stimulus_id(int(i)) for i in nsd_ids), loader=load,
                       metadata={"nsd_id": nsd_ids})
