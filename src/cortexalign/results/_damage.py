"""What is wrong with a results store that cannot be opened: one error per kind of damage.

DuckDB reports a damaged file in several ways (an ``IOException`` for a short read, a plain
``duckdb.Error`` for a checksum, "not a valid DuckDB database file" for a foreign or empty file)
and a lock held by another process as an ``IOException`` too. ``check_header`` reads the file's
first bytes before DuckDB sees it (so a SQLite or CSV file is never handed to DuckDB, which would
try to download a scanner extension for it), and ``classify`` turns DuckDB's exception into the
``cortexalign.errors`` store error of its kind. Only :class:`StoreLockedError` is worth waiting
on; every other kind is final and is raised at once.

DuckDB's file layout (``storage/storage_info.hpp``): a 4096-byte main header whose bytes 8-11
are the magic ``DUCK``, then two 4096-byte database headers; a valid file is at least 12288
bytes long.
"""

from __future__ import annotations

from pathlib import Path

from cortexalign.errors import (
    NotAStoreError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreTruncatedError,
)

__all__ = ["check_header", "classify", "HEADER_BYTES", "MOVE_ASIDE"]

HEADER_BYTES = 3 * 4096
MOVE_ASIDE = ("move {name} aside (e.g. to {name}.damaged) and rerun the experiment with the "
              "same --out: its jobs are scored again from the feature cache, without extracting "
              "again; `cortexalign doctor OUT` checks the store and the cache")

_SIGNATURES = ((b"SQLite format 3\x00", "a SQLite database"), (b"PAR1", "a Parquet file"),
               (b"PK\x03\x04", "a zip archive"), (b"\x89HDF", "an HDF5 file"),
               (b"\x93NUMPY", "a .npy array"))


def _looks_like(head: bytes) -> str:
    for sig, what in _SIGNATURES:
        if head.startswith(sig):
            return what
    try:
        head[:256].decode("utf-8")
    except UnicodeDecodeError:
        return "binary data of another format"
    return "a text file"


def _fix(path: Path) -> str:
    return MOVE_ASIDE.format(name=path.name)


def check_header(path: Path) -> None:
    """Raise the store error of a file that cannot be a DuckDB database: empty, cut short inside
    its headers, or another format. A file that passes may still be damaged further in."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as exc:
        raise StoreCorruptError(path, f"the file cannot be read ({exc.strerror})",
                                "check the file's permissions and the disk") from None
    if size == 0:
        raise StoreTruncatedError(path, "the file is empty (0 bytes): it was cut off before its "
                                  "first write reached the disk", _fix(path))
    if size < 12:
        raise StoreTruncatedError(path, f"only {size} bytes, shorter than DuckDB's header",
                                  _fix(path))
    if head[8:12] != b"DUCK":
        raise NotAStoreError(path, f"it is {_looks_like(head)}, not a DuckDB database (no DUCK "
                             "magic at byte 8)", "point at the results.duckdb a `cortexalign "
                             "run` wrote, or a new path")
    if size < HEADER_BYTES:
        raise StoreTruncatedError(path, f"{size} bytes, shorter than DuckDB's {HEADER_BYTES}-"
                                  "byte headers", _fix(path))


def classify(exc: BaseException, path: Path) -> StoreError | None:
    """The store error that DuckDB's ``exc`` on ``path`` means, or None when it is not about the
    file (a bad query: the caller re-raises it)."""
    msg = str(exc)
    low = msg.lower()
    if "could not set lock" in low or "conflicting lock" in low:
        holder = msg.split("Conflicting lock is held in", 1)[-1].split(". See also")[0].strip()
        return StoreLockedError(path, f"another process has it open ({holder})",
                                "wait for the writing run to finish (`cortexalign status OUT` "
                                "shows it), or close the notebook or program holding it; "
                                "DuckDB lets one process write a file and nobody read it then")
    if "could not read enough bytes" in low:
        return StoreTruncatedError(path, "the file ends before data its header points to "
                                   f"(DuckDB: {msg.splitlines()[0]})", _fix(path))
    if "corrupt database file" in low or "checksum" in low:
        return StoreCorruptError(path, f"{msg.splitlines()[0]} (the bytes changed after they "
                                 "were written: a bad disk, a partial copy, or an edit)",
                                 _fix(path))
    if "not a valid duckdb database file" in low:
        return NotAStoreError(path, "DuckDB does not recognise the file", _fix(path))
    if "serialization" in low or "deserializ" in low or "internal error" in low:
        return StoreCorruptError(path, f"DuckDB cannot decode it ({msg.splitlines()[0]})",
                                 _fix(path))
    return None
