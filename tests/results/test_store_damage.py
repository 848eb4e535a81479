"""Every way a results store can be unusable has its own error, raised at once (issue 20, case 2).

Kinds: truncated (empty, inside the headers, inside the data), a damaged header (checksum), a
file that is not a store (text, SQLite, another DuckDB database), another schema version, and a
lock held by another process. Each error names the file, what is wrong and the fix; only a lock
is reported as a lock (and only a lock is waited on). The CLI says so with exit status 2 and no
traceback; ``cortexalign status`` says "damaged".
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

import duckdb
import pytest
from typer.testing import CliRunner

from cortexalign.cli import app
from cortexalign.errors import (
    NotAStoreError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreTruncatedError,
    StoreVersionError,
)
from cortexalign.results import ResultsStore, ScoreRecord
from cortexalign.results import _store as store_mod

runner = CliRunner()


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("store") / "results.duckdb"
    store = ResultsStore(path)
    run = store.start_run("name: damage\n")
    for k in range(20):
        store.record_job(f"job-{k}", run, [ScoreRecord(model="m", model_id="m", layer=f"l{k}",
                                                       target="IT", metric="rsa", value=0.1)])
    store.finish_run(run)
    return path.read_bytes()


def _sqlite(path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE scores (value REAL)")
    con.commit()
    con.close()


def _foreign_duckdb(path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE scores (value DOUBLE)")


def _other_version(path, good: bytes) -> None:
    path.write_bytes(good)
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE schema_version SET version = 999")


def _flip(good: bytes, start: int, stop: int) -> bytes:
    bad = bytearray(good)
    bad[start:stop] = bytes(b ^ 0xFF for b in bad[start:stop])
    return bytes(bad)


# name -> (how to damage a good file, the error, words the message must hold)
DAMAGE = {
    "empty": (lambda p, g: p.write_bytes(b""), StoreTruncatedError, "0 bytes"),
    "cut_in_headers": (lambda p, g: p.write_bytes(g[:5000]), StoreTruncatedError,
                       "shorter than DuckDB's"),
    "cut_in_data": (lambda p, g: p.write_bytes(g[:20000]), StoreTruncatedError,
                    "ends before data"),
    "bad_main_header": (lambda p, g: p.write_bytes(_flip(g, 0, 8)), StoreCorruptError,
                        "checksum"),
    "bad_db_headers": (lambda p, g: p.write_bytes(_flip(_flip(g, 4096, 4104), 8192, 8200)),
                       StoreCorruptError, "checksum"),
    "text_file": (lambda p, g: p.write_text("model,value\nresnet,0.3\n"), NotAStoreError,
                  "a text file"),
    "sqlite_file": (lambda p, g: _sqlite(p), NotAStoreError, "a SQLite database"),
    "other_duckdb": (lambda p, g: _foreign_duckdb(p), NotAStoreError, "schema_version"),
    "other_version": (_other_version, StoreVersionError, "schema version 999"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_each_damage_has_its_own_error_naming_file_problem_and_fix(kind, good_bytes, tmp_path,
                                                                   monkeypatch):
    damage, error, words = DAMAGE[kind]
    path = tmp_path / "results.duckdb"
    damage(path, good_bytes)
    sleeps = []
    monkeypatch.setattr(store_mod.time, "sleep", sleeps.append)  # a lock wait would sleep
    for read_only in (True, False):
        with pytest.raises(error) as err:
            ResultsStore(path, read_only=read_only, lock_timeout_s=30)
        msg = str(err.value)
        assert str(path) in msg and words in msg and "Fix:" in msg, msg
        assert not isinstance(err.value, StoreLockedError)
        assert not re.search(r"\block", msg, re.IGNORECASE), msg  # ("block" is fine)
    assert sleeps == []  # raised at once: damage is never waited on as if it were a lock


HOLD_WRITE_LOCK = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("HELD", flush=True)
sys.stdin.readline()
"""


def test_a_lock_is_reported_as_a_lock_after_the_timeout(good_bytes, tmp_path):
    path = tmp_path / "results.duckdb"
    path.write_bytes(good_bytes)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WRITE_LOCK, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        with pytest.raises(StoreLockedError) as err:
            ResultsStore(path, read_only=True, lock_timeout_s=0.2)
    finally:
        holder.communicate("\n", timeout=60)
    msg = str(err.value)
    assert str(path) in msg and "locked by another process" in msg and f"PID {holder.pid}" in msg
    assert "one writer" in msg and "damaged" not in msg
    assert len(ResultsStore(path, read_only=True).scores_frame()) == 20  # fine once released


@pytest.mark.parametrize("kind", ["cut_in_data", "bad_main_header", "text_file",
                                  "other_version"])
def test_cli_says_what_is_wrong_without_a_traceback(kind, good_bytes, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    DAMAGE[kind][0](out / "results.duckdb", good_bytes)
    error = DAMAGE[kind][1]
    for args in (["status", str(out)], ["results", str(out)],
                 ["results", str(out), "--export", str(tmp_path / "s.csv")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert res.exception is None or isinstance(res.exception, SystemExit)
        assert "Traceback" not in res.output and error.kind in res.output, res.output
    status = runner.invoke(app, ["status", str(out)]).output
    if issubclass(error, (StoreTruncatedError, StoreCorruptError)):
        assert "damaged" in status
    assert not (tmp_path / "s.csv").exists()


def test_store_errors_are_input_errors_for_old_callers():
    assert issubclass(StoreError, ValueError)
    for cls in (StoreTruncatedError, StoreCorruptError, NotAStoreError, StoreVersionError,
                StoreLockedError):
        assert issubclass(cls, StoreError) and cls.kind
