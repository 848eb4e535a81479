"""Loaders that turn folders, npz files and bundled data into ``StimulusSet`` objects."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np

from cortexalign.errors import InputError
from cortexalign.npz import npz_array
from cortexalign.registry import Registry
from cortexalign.stimuli._stimulus_set import StimulusSet

__all__ = ["load_folder", "load_npz", "load_bundled", "BUNDLED", "IMAGE_SUFFIXES", "load_stimuli",
           "read_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
BUNDLED: Registry = Registry("bundled stimulus set")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_image(path: Path) -> np.ndarray:
    """An image file as a uint8 array, (h, w, 3) RGB or (h, w) for a greyscale file;
    ``InputError`` for an unreadable one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise InputError("images", "a readable image file", f"{str(path)!r} ({err})",
                         "remove or replace the corrupt file") from None


def load_folder(path: str | Path, name: str | None = None, verify: bool = True) -> StimulusSet:
    """Every image file under ``path`` (recursively), ids = paths relative to it, sorted.

    With ``verify`` each file is opened once so a corrupt file fails here rather than mid-run.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError("path", "a folder of images", repr(str(path)), "check the path")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError("path", f"a folder holding images ({', '.join(IMAGE_SUFFIXES)})",
                         f"{str(path)!r} with no image files", "point at the folder with the images")
    if verify:
        from PIL import Image, UnidentifiedImageError

        for f in files:
            try:
                with Image.open(f) as im:
                    im.verify()
            except (UnidentifiedImageError, OSError, SyntaxError) as err:
                raise InputError("images", "readable image files", f"{str(f)!r} ({err})",
                                 "remove or replace the corrupt file") from None
    h = hashlib.sha256()
    for f in files:
        h.update(_file_digest(f).encode())
    ids = tuple(f.relative_to(root).as_posix() for f in files)
    return StimulusSet(name=name or root.name, ids=ids, loader=lambda i: read_image(files[i]),
                       fingerprint=h.hexdigest())


def load_npz(path: str | Path, images_key: str = "images", ids_key: str | None = "stimulus_ids",
             name: str | None = None, metadata_keys: tuple[str, ...] = ()) -> StimulusSet:
    """Images from an ``.npz`` file: ``images_key`` holds (S, H, W[, C]); ids from ``ids_key``.

    When ``ids_key`` is absent from the file the ids are ``stim00000``, ``stim00001``...
    The file is read without pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("path", "an existing .npz file", repr(str(path)), "check the path")
    with np.load(path, allow_pickle=False) as data:
        if images_key not in data.files:
            raise InputError("images_key", f"one of the arrays in {path.name}: {data.files}",
                             repr(images_key), "pass the key that holds the images")
        images = npz_array(data, images_key, path, "image array")
        ids = ([str(s) for s in npz_array(data, ids_key, path, "id array")]
               if ids_key and ids_key in data.files else None)
        meta = {k: npz_array(data, k, path, "metadata array") for k in metadata_keys}
    stim = StimulusSet.from_arrays(images, ids=ids, name=name or path.stem, metadata=meta)
    return StimulusSet(stim.name, stim.ids, stim.loader, stim.metadata,
                       fingerprint=_file_digest(path) + images_key)


def load_bundled(name: str, **kwargs) -> StimulusSet:
    """A registered stimulus set (see ``BUNDLED.names()``); ``kwargs`` go to its loader (e.g.
    ``path`` for ``allen.natural_scenes``)."""
    return BUNDLED.get(name)(**kwargs)


def _data_path(*parts: str) -> Path:
    return Path(str(resources.files("cortexalign").joinpath("data", *parts)))


@BUNDLED.register(
    "kriegeskorte92",
    citation="Kriegeskorte, Mur, Ruff et al. (2008) Matching categorical object representations in "
             "inferior temporal cortex of man and monkey. Neuron 60(6). Data via rsatoolbox (MIT).",
    description="92 object images (175 x 175 RGB) with human and monkey IT RDMs",
)
def kriegeskorte92() -> StimulusSet:
    """92 object images of Kriegeskorte et al. (2008), ids ``img00``..``img91`` in RDM order."""
    path = _data_path("kriegeskorte92", "kriegeskorte92.npz")
    with np.load(path, allow_pickle=False) as data:
        images = data["images"]
        meta = {"category": data["category"],
                "animate": data["category_vectors"][:, 0].astype(bool)}
    ids = tuple(f"img{k:02d}" for k in range(len(images)))
    stim = StimulusSet.from_arrays(images, ids=ids, name="kriegeskorte92", metadata=meta)
    return stim


def load_stimuli(source: str | Path, **kwargs) -> StimulusSet:
    """Dispatch on ``source``: a bundled name, a folder, or an ``.npz`` file."""
    s = str(source)
    if s in BUNDLED:
        return load_bundled(s, **kwargs)
    p = Path(s)
    if p.is_dir():
        return load_folder(p, **kwargs)
    if p.suffix == ".npz":
        return load_npz(p, **kwargs)
    raise InputError("stimuli", f"a bundled set ({', '.join(BUNDLED.names())}), a folder of images, "
                     "or an .npz file", repr(s), "check the path or the bundled name")
