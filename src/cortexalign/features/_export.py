"""Features to and from one file: ``.npz``, MATLAB ``.mat`` or HDF5 ``.h5``.

The hand-off format for analyses outside cortexalign (THINGSvision's "extract and save" step):
one array per layer, the stimulus ids in row order, and a JSON metadata string naming the model,
the layers in order with their pooling, cache key, shape and dtype, and the cortexalign version.

Layer names (``blocks.5``, ``image_encoder.neck.0``) are not valid MATLAB or HDF5 names, so each
layer is stored under a *field*: the name with every non-word character replaced by ``_``, a
leading ``L_`` when it does not start with a letter, cut to MATLAB's 63 characters and made
unique (``_2``, ``_3`` ...). The metadata maps layers to fields, so ``load_features`` gives back
the original names. Writes are atomic (a temporary file in the destination folder, then
``os.replace``, or ``os.link`` when an existing file must not be replaced), and nothing is ever
pickled: ``.npz`` files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cortexalign.errors import InputError
from cortexalign.features._extract import Features

__all__ = ["save_features", "load_features", "FEATURE_FORMATS", "check_destination", "check_new_file",
           "link_new"]

FORMAT_NAME = "cortexalign.features"
FORMAT_VERSION = 1
_RESERVED = ("stimulus_ids", "metadata")
_MATLAB_NAMELENGTHMAX = 63
_MAT5_MAX_BYTES = 2**31 - 1  # MAT-file version 5 stores a variable's size in 32 bits


def _field_names(layers: list[str]) -> dict[str, str]:
    """layer -> a unique MATLAB-valid field name (letters, digits, ``_``; <= 63 characters)."""
    fields: dict[str, str] = {}
    taken = set(_RESERVED)
    for layer in layers:
        base = re.sub(r"\W", "_", layer, flags=re.ASCII)
        if not base[:1].isalpha() or not base[:1].isascii():
            base = "L_" + base
        base = base[:_MATLAB_NAMELENGTHMAX]
        field, i = base, 1
        while field in taken:
            i += 1
            field = f"{base[:_MATLAB_NAMELENGTHMAX - len(str(i)) - 1]}_{i}"
        taken.add(field)
        fields[layer] = field
    return fields


# ---------------------------------------------------------------- per-format writers and readers
# writer(tmp_path, arrays, ids, metadata_json); reader(path) -> (arrays by field, metadata_json)

def _write_npz(path: Path, arrays: dict[str, np.ndarray], ids: np.ndarray, meta: str) -> None:
    # the archive np.savez writes, without its keyword arguments: a layer field named ``file``
    # or ``allow_pickle`` would have clashed with (or silently set) np.savez's own parameters
    members = {"stimulus_ids": ids, "metadata": np.array(meta), **arrays}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for field, values in members.items():
            with zf.open(f"{field}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(values), allow_pickle=False)


def _read_npz(path: Path) -> tuple[Mapping[str, np.ndarray], str]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, str(arrays.pop("metadata", np.array("")))


def _write_mat(path: Path, arrays: dict[str, np.ndarray], ids: np.ndarray, meta: str) -> None:
    from scipy.io import savemat

    # MATLAB has no float16: store float32 (exact), the metadata records the dtype to restore.
    # The size limit applies to what is stored, so a float16 layer counts twice its nbytes.
    big = [f for f, a in arrays.items()
           if a.size * (4 if a.dtype == np.float16 else a.itemsize) > _MAT5_MAX_BYTES]
    if big:
        raise InputError("path", "layers under 2 GiB each for a .mat (MAT-file v5) file",
                         f"{big[:3]} over 2 GiB", "save to .npz or .h5 instead")
    mat = {f: a.astype(np.float32) if a.dtype == np.float16 else a for f, a in arrays.items()}
    cell_ids = np.empty(len(ids), dtype=object)  # a cell array of char vectors for MATLAB
    cell_ids[:] = list(ids)
    with open(path, "wb") as fh:
        savemat(fh, {**mat, "stimulus_ids": cell_ids, "metadata": meta}, do_compression=False,
                oned_as="column")


def _read_mat(path: Path) -> tuple[Mapping[str, np.ndarray], str]:
    from scipy.io import loadmat

    data = loadmat(path)
    meta = data.pop("metadata", np.array([""]))
    return data, str(meta.reshape(-1)[0]) if meta.size else ""


def _write_h5(path: Path, arrays: dict[str, np.ndarray], ids: np.ndarray, meta: str) -> None:
    h5py = _h5py()
    with h5py.File(path, "w") as f:
        for field, values in arrays.items():
            f.create_dataset(field, data=values)
        f.create_dataset("stimulus_ids", data=[s.encode() for s in ids],
                         dtype=h5py.string_dtype("utf-8"))
        f.attrs["metadata"] = meta


def _read_h5(path: Path) -> tuple[Mapping[str, np.ndarray], str]:
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        arrays = {k: v[()] for k, v in f.items()  # datasets only: a group is not a layer
                  if k != "stimulus_ids" and isinstance(v, h5py.Dataset)}
        meta = f.attrs.get("metadata", "")
    return arrays, meta.decode() if isinstance(meta, bytes) else str(meta)


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - h5py comes with pynwb
        raise InputError("path", "h5py installed for an .h5 file", "no h5py",
                         "pip install h5py, or save to .npz or .mat") from err
    return h5py


@dataclass(frozen=True)
class FeatureFormat:
    """A file format: ``write(tmp_path, arrays_by_field, ids, metadata_json)`` and
    ``read(path) -> (arrays_by_field, metadata_json)``."""

    write: Callable[[Path, dict[str, np.ndarray], np.ndarray, str], None]
    read: Callable[[Path], tuple[Mapping[str, np.ndarray], str]]
    description: str


#: Suffix -> format.
FEATURE_FORMATS: dict[str, FeatureFormat] = {
    ".npz": FeatureFormat(_write_npz, _read_npz, "NumPy archive (np.load)"),
    ".mat": FeatureFormat(_write_mat, _read_mat, "MATLAB v5 (scipy.io.loadmat / MATLAB load)"),
    ".h5": FeatureFormat(_write_h5, _read_h5, "HDF5 (h5py)"),
    ".hdf5": FeatureFormat(_write_h5, _read_h5, "HDF5 (h5py)"),
}


def feature_format(path: str | os.PathLike[str]) -> FeatureFormat:
    """The format of ``path`` by its suffix, or an ``InputError`` listing the supported ones."""
    suffix = Path(path).suffix.lower()
    if suffix not in FEATURE_FORMATS:
        raise InputError("path", f"a file ending in {', '.join(FEATURE_FORMATS)}",
                         repr(str(path)), "name the file e.g. features.npz (NumPy) or "
                         "features.mat (MATLAB)")
    return FEATURE_FORMATS[suffix]


def check_destination(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Validate an output path before any work: known suffix, not a folder, and not an
    existing file unless ``overwrite``."""
    path = Path(path)
    feature_format(path)
    check_new_file(path, overwrite, "path", "features.npz")
    return path


def check_new_file(path: Path, overwrite: bool, parameter: str, example: str) -> None:
    """``path`` names a file, not a folder, and no existing file unless ``overwrite`` (the
    ``InputError`` names ``parameter``; ``example`` is a file name to suggest inside a folder)."""
    if path.is_dir():
        raise InputError(parameter, "a file name", f"the folder {str(path)!r}",
                         f"name a file inside it, e.g. {str(path / example)!r}")
    if path.exists() and not overwrite:
        raise InputError(parameter, "a file that does not exist yet", f"existing {str(path)!r}",
                         "pass overwrite=True (--overwrite) to replace it, or choose another name")


def _metadata(features: Mapping[str, Features], fields: dict[str, str],
              provenance: Mapping[str, Any] | None) -> str:
    from cortexalign import __version__

    first = next(iter(features.values()))
    return json.dumps({
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "cortexalign_version": __version__,
        "model_id": first.model_id, "n_stimuli": len(first.stimulus_ids),
        "stimulus_ids": list(first.stimulus_ids),
        "layers": [{"name": name, "field": fields[name], "layer": f.layer, "pooling": f.pooling,
                    "key": f.key, "shape": list(f.shape), "dtype": str(f.values.dtype)}
                   for name, f in features.items()],
        "provenance": dict(provenance or {}),
    })


def _check_features(features: Any) -> None:
    if not isinstance(features, Mapping) or not features:
        raise InputError("features", "a non-empty dict layer -> Features (extract_features)",
                         type(features).__name__ if not isinstance(features, Mapping)
                         else "an empty mapping", "pass the result of extract_features")
    bad = [k for k, f in features.items() if not isinstance(f, Features) or not isinstance(k, str)]
    if bad:
        raise InputError("features", "str layer names mapped to Features", f"entries {bad[:3]}",
                         "pass the result of extract_features")
    first = next(iter(features.values()))
    for name, f in features.items():
        if f.stimulus_ids != first.stimulus_ids or f.model_id != first.model_id:
            raise InputError("features", "layers of one model on the same stimuli (one file "
                             "has one stimulus_ids)", f"layer {name!r}: model {f.model_id!r}, "
                             f"{len(f.stimulus_ids)} stimuli", "save each model / stimulus set "
                             "to its own file")


def save_features(features: Mapping[str, Features], path: str | os.PathLike[str], *,
                  overwrite: bool = False, provenance: Mapping[str, Any] | None = None) -> Path:
    """Write features to one ``.npz``, ``.mat`` or ``.h5`` file, atomically.

    Parameters
    ----------
    features : dict layer -> Features of one model on one stimulus set (``extract_features``);
        each layer's values, (s, d) or (s, ...), become one array, in this order.
    path : the file; its suffix picks the format (``FEATURE_FORMATS``). Missing parent folders
        are created.
    overwrite : replace an existing file (otherwise an ``InputError``, and nothing is written).
    provenance : JSON-serialisable details stored in the metadata (stimuli, weights, device).

    Returns
    -------
    The path written.

    Notes
    -----
    The data go to a temporary file in the destination folder, renamed over ``path`` only once
    complete, so an interrupted write leaves no file (and no temporary file) behind. Without
    ``overwrite`` the rename is a hard link, which fails if another process created ``path`` in
    the meantime; on a filesystem without hard links the name is first claimed with an empty
    ``O_EXCL`` file (briefly visible to readers) and the data renamed over it.
    """
    _check_features(features)
    path = check_destination(path, overwrite)
    fmt = feature_format(path)
    fields = _field_names(list(features))
    meta = _metadata(features, fields, provenance)
    ids = np.array(next(iter(features.values())).stimulus_ids, dtype=str)
    arrays = {fields[name]: np.ascontiguousarray(f.values) for name, f in features.items()}
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        # O_EXCL: never another file; mode 0o666 under the umask (mkstemp's would be 0o600)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        fmt.write(tmp, arrays, ids, meta)
        if overwrite:
            os.replace(tmp, path)
        else:
            link_new(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for folder in made:  # parents this call created, innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return path


def link_new(tmp: Path, path: Path) -> None:
    """Publish ``tmp`` as ``path`` unless ``path`` exists (hard link: atomic and no-clobber)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise InputError("path", "a file that does not exist yet", f"{str(path)!r}, created "
                         "while the features were written", "pass overwrite=True (--overwrite) "
                         "or choose another name") from None
    except OSError:  # a filesystem without hard links: reserve the name, then rename over it
        # (checking path.exists() before os.replace let a writer that came in between be
        # silently replaced; O_EXCL makes the check and the claim one step)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            raise InputError("path", "a file that does not exist yet", f"existing {str(path)!r}",
                             "pass overwrite=True (--overwrite) or choose another name") from None
        try:
            os.replace(tmp, path)
        except BaseException:
            path.unlink(missing_ok=True)  # our empty reservation, never another's file
            raise
    else:
        tmp.unlink()


def load_features(path: str | os.PathLike[str]) -> dict[str, Features]:
    """Read a file written by :func:`save_features` back into dict layer -> Features.

    Parameters
    ----------
    path : an ``.npz``, ``.mat`` or ``.h5`` file from :func:`save_features` (read without
        unpickling anything).

    Returns
    -------
    dict layer -> Features in the saved layer order, with the saved values (same dtype and
    shape), stimulus ids, model id, pooling and cache key (``from_cache=False``).
    """
    path = Path(path)
    fmt = feature_format(path)
    if not path.is_file():
        raise InputError("path", "an existing features file", repr(str(path)),
                         "check the path (write one with cortexalign extract or save_features)")
    try:
        arrays, meta_json = fmt.read(path)
        meta = json.loads(meta_json) if meta_json else None
    # a file not written by us, or damaged: a truncated zip (BadZipFile), a MAT v7.3 file
    # (NotImplementedError), an unreadable HDF5 file (OSError)...
    except (OSError, ValueError, TypeError, KeyError, EOFError, NotImplementedError,
            zipfile.BadZipFile) as err:
        raise _not_ours(path, err) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise InputError("path", "a features file written by save_features (metadata format "
                         f"{FORMAT_NAME!r})", f"{str(path)!r} without it",
                         "rewrite it with cortexalign extract")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError("path", f"format_version <= {FORMAT_VERSION}",
                         str(meta.get("format_version")), "upgrade cortexalign to read this file")
    try:
        return _features_from(path, arrays, meta)
    except (ValueError, TypeError, KeyError, AssertionError) as err:  # metadata and data disagree
        raise _not_ours(path, err) from None


def _not_ours(path: Path, err: Exception) -> InputError:
    return InputError("path", "a features file written by save_features",
                      f"{str(path)!r} ({type(err).__name__}: {err})",
                      "rewrite it with cortexalign extract")


def _features_from(path: Path, arrays: Mapping[str, np.ndarray],
                   meta: dict[str, Any]) -> dict[str, Features]:
    ids = tuple(str(i) for i in meta["stimulus_ids"])
    out: dict[str, Features] = {}
    for entry in meta["layers"]:
        if entry["field"] not in arrays:
            raise InputError("path", f"the array {entry['field']!r} of layer {entry['name']!r}",
                             f"{str(path)!r} without it", "rewrite it with cortexalign extract")
        dtype = np.dtype(entry["dtype"])
        if dtype.hasobject:  # never build object arrays from a file
            raise ValueError(f"layer {entry['name']!r} has dtype {dtype}")
        values = np.asarray(arrays[entry["field"]]).reshape(entry["shape"])
        values = values.astype(dtype, copy=False)
        out[entry["name"]] = Features(np.ascontiguousarray(values), ids, meta["model_id"],
                                      entry["layer"], entry["pooling"], entry["key"])
    return out
