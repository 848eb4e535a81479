"""The Brain Observatory natural-scenes template as a ``StimulusSet`` whose ids match the responses.

118 grayscale photographs, 918 x 1174 pixels (de Vries et al. 2020), ids ``ns000``..``ns117`` in
template-frame order. The template ships inside every three_session_B ophys NWB file
(``stimulus/templates/natural_scenes_image_stack/data``, uint8 (118, 918, 1174)); the Neuropixels
cache keeps it as one image file per frame (``natural_scene_<frame>.tiff``). Both are read lazily.
The blank (frame -1, the mean-luminance grey screen) becomes the uniform image ``blank`` (value
127) when ``include_blank`` is set, so a model sees what the mouse saw.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import h5py
import numpy as np

from cortexalign.errors import InputError
from cortexalign.neural.allen._meta import natural_scene_ids
from cortexalign.neural.allen._ophys import NS_TEMPLATE
from cortexalign.stimuli import IMAGE_SUFFIXES, StimulusSet, read_image

__all__ = ["load_natural_scenes_stimuli", "BLANK_LEVEL"]

BLANK_LEVEL = 127
"""uint8 grey level of the blank screen (the Brain Observatory's mean luminance)."""


def _template_key(f: h5py.File) -> str:
    for key in NS_TEMPLATE:
        if key in f:
            return key + "/data" if isinstance(f[key], h5py.Group) else key
    raise KeyError


def _from_nwb(path: Path) -> tuple[int, tuple[int, int], callable, str]:
    try:
        with h5py.File(path, "r") as f:
            key = _template_key(f)
            n, h, w = f[key].shape[:3]
            h256 = hashlib.sha256()
            for k in range(n):
                h256.update(f[key][k].tobytes())
            digest = h256.hexdigest()
    except KeyError:
        raise InputError("path", f"an ophys NWB file holding {NS_TEMPLATE[0]}", repr(str(path)),
                         "use a three_session_B experiment file, or a folder of "
                         "natural_scene_<frame> images") from None
    except OSError as err:
        raise InputError("path", "a readable HDF5 (NWB) file", f"{str(path)!r} ({err})",
                         "download the file again") from None

    def read(k: int) -> np.ndarray:
        with h5py.File(path, "r") as f:
            return np.asarray(f[_template_key(f)][k])

    return n, (h, w), read, f"{path.name}:{n}x{h}x{w}:{digest}"


def _from_folder(path: Path) -> tuple[int, tuple[int, int], callable, str]:
    files: dict[int, Path] = {}
    for p in path.iterdir():
        m = re.search(r"(\d+)$", p.stem)
        if p.suffix.lower() in IMAGE_SUFFIXES and m:
            files[int(m.group(1))] = p
    n = len(files)
    if n == 0 or sorted(files) != list(range(n)):
        raise InputError("path", "a folder of images numbered 0..N-1 (natural_scene_0.tiff...)",
                         f"{str(path)!r} with frames {sorted(files)[:5]}... ({n} numbered images)",
                         "point at the natural_scene_templates folder of the cache")
    h, w = read_image(files[0]).shape[:2]
    digest = hashlib.sha256("".join(f"{k}:{files[k].stat().st_size}" for k in range(n)).encode())
    return n, (h, w), lambda k: read_image(files[k]), digest.hexdigest()


def load_natural_scenes_stimuli(path: str | Path, include_blank: bool = False,
                                name: str = "allen_natural_scenes") -> StimulusSet:
    """The natural-scenes template as a lazily loaded ``StimulusSet``.

    Parameters
    ----------
    path : an ophys NWB file that holds the template, or a folder of ``*_<frame>`` image files.
    include_blank : append the grey screen as stimulus ``"blank"`` (match the responses' option).

    Returns
    -------
    StimulusSet with ids ``ns000``.. [+ ``blank``]; metadata ``frame`` (template frame, -1 blank).
    """
    path = Path(path)
    if path.is_dir():
        n, (h, w), read, fp = _from_folder(path)
    elif path.is_file():
        n, (h, w), read, fp = _from_nwb(path)
    else:
        raise InputError("path", "an NWB file or a folder of template images", repr(str(path)),
                         "check the path")

    def loader(k: int) -> np.ndarray:
        if k == n:
            return np.full((h, w), BLANK_LEVEL, dtype=np.uint8)
        return read(k)

    ids = natural_scene_ids(n, include_blank)
    frames = np.arange(n).tolist() + ([-1] if include_blank else [])
    return StimulusSet(name=name, ids=ids, loader=loader, metadata={"frame": np.asarray(frames)},
                       fingerprint=fp + (":blank" if include_blank else ""))
