"""Opening shared SQLite files while other processes open them too."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from imagerec.core import sqlite as _sqlite
from imagerec.core.sqlite import open_database


def test_new_file_is_wal_and_autocommit(tmp_path: Path):
    db = open_database(tmp_path / "x.db", pragmas=("PRAGMA foreign_keys = ON",))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    assert sqlite3.connect(tmp_path / "x.db").execute("SELECT x FROM t").fetchall() == [(1,)]


def test_readonly_does_not_create_or_write(tmp_path: Path):
    with pytest.raises(sqlite3.OperationalError):
        open_database(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    open_database(tmp_path / "a b%.db").execute("CREATE TABLE t (x)")
    reader = open_database(tmp_path / "a b%.db", readonly=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("INSERT INTO t VALUES (1)")


def test_an_immediate_lock_error_is_waited_out(tmp_path: Path, monkeypatch):
    real, calls = _sqlite._open_once, []

    def flaky(*args):
        calls.append(1)
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database is locked")
        return real(*args)

    monkeypatch.setattr(_sqlite, "_open_once", flaky)
    assert open_database(tmp_path / "x.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(calls) == 3


def test_a_lock_that_never_clears_fails_after_patience(tmp_path: Path, monkeypatch):
    def locked(*args):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(_sqlite, "_open_once", locked)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        open_database(tmp_path / "x.db", patience=0.2)


def test_damage_is_not_retried(tmp_path: Path, monkeypatch):
    (tmp_path / "x.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        open_database(tmp_path / "x.db", patience=60)  # would hang a minute if retried


def _open_and_write(path: str) -> str:
    try:
        db = open_database(path)
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE IF NOT EXISTS t (x)")
        db.execute("INSERT INTO t VALUES (1)")
        db.execute("COMMIT")
        return "ok"
    except Exception as exc:  # reported to the test, which names it
        return repr(exc)


def test_many_processes_creating_one_file_at_once_all_succeed(tmp_path: Path):
    # Without the retry about one round in a few hundred failed with
    # "database is locked" (the WAL switch does not wait); CI hit it.
    paths = [str(tmp_path / f"{round_}.db") for round_ in range(150) for _ in range(3)]
    with multiprocessing.get_context("fork").Pool(3) as pool:
        results = pool.map(_open_and_write, paths, chunksize=1)
    assert [r for r in results if r != "ok"] == []
    assert sqlite3.connect(paths[0]).execute("SELECT COUNT(*) FROM t").fetchone()[0] == 3
