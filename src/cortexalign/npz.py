"""Read one array of an ``.npz`` file without pickle, with a clear error for object arrays.

``np.load(path, allow_pickle=False)`` opens any archive, but reading an array saved with
``dtype=object`` (a list of Python strings or mixed types, e.g. ``np.savez(f, ids=list_of_str)``
after an ``np.array(..., dtype=object)``) raises numpy's bare ``ValueError: Object arrays cannot
be loaded when allow_pickle=False``. Loading it would mean unpickling code from the file, which
cortexalign never does; :func:`npz_array` says which array, in which file, and how to save it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cortexalign.errors import InputError

__all__ = ["npz_array"]


def npz_array(data: Mapping[str, np.ndarray], key: str, path: str | Path,
              what: str = "array") -> np.ndarray:
    """``data[key]`` of an open ``np.load(..., allow_pickle=False)`` archive.

    Raises
    ------
    InputError : the array holds Python objects (``dtype=object``), naming the array and file.
    """
    try:
        return data[key]
    except ValueError as err:
        if "pickle" not in str(err).lower():
            raise
        raise InputError(f"{Path(path).name}[{key!r}]", f"a numeric or string {what} (a plain "
                         "numpy dtype)", "an object array (dtype=object), which could only be "
                         "read by unpickling code from the file", f"save it with a plain dtype, "
                         f"e.g. np.savez(path, {key}=np.asarray(values, dtype=str)) for ids or "
                         "labels, or dtype=np.float32 for numbers") from None
