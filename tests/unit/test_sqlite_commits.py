"""The outcome writer's SQLite connection: TRUNCATE in place of DELETE, synchronous NORMAL in
WAL, every other mode left alone; and other connections unaffected."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailroom import sqlite_commits


def connect(path: Path, mode: str | None = None) -> sqlite3.Connection:
    raw = sqlite3.connect(path, isolation_level=None)
    if mode:
        raw.execute(f"PRAGMA journal_mode = {mode}")
    return raw


def test_the_default_rollback_journal_commits_by_truncating(tmp_path: Path) -> None:
    db = tmp_path / "q.sqlite3"
    writer = connect(db)
    writer.execute("CREATE TABLE t (x)")
    assert sqlite_commits.tune(writer) == "truncate"
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    writer.execute("COMMIT")
    journal = tmp_path / "q.sqlite3-journal"
    assert journal.exists()
    assert journal.stat().st_size == 0
    # The setting is the connection's: a new one still runs in DELETE, reads the commit (a
    # zero-byte journal is not hot), and its own commit deletes the journal as usual.
    other = connect(db)
    assert other.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert other.execute("SELECT x FROM t").fetchall() == [(1,)]
    other.execute("INSERT INTO t VALUES (2)")
    assert not journal.exists()
    writer.execute("INSERT INTO t VALUES (3)")
    assert other.execute("SELECT count(*) FROM t").fetchone() == (3,)
    # Durability is not traded: synchronous stays at its default (FULL, 2).
    assert writer.execute("PRAGMA synchronous").fetchone() == (2,)


def test_wal_commits_with_synchronous_normal(tmp_path: Path) -> None:
    writer = connect(tmp_path / "q.sqlite3", "WAL")
    assert sqlite_commits.tune(writer) == "wal"
    assert writer.execute("PRAGMA synchronous").fetchone() == (1,)


@pytest.mark.parametrize("mode", ["PERSIST", "MEMORY"])
def test_a_mode_the_owner_chose_is_left_alone(tmp_path: Path, mode: str) -> None:
    writer = connect(tmp_path / "q.sqlite3", mode)
    assert sqlite_commits.tune(writer) == mode.lower()
    assert writer.execute("PRAGMA synchronous").fetchone() == (2,)


def test_an_in_memory_database_is_left_alone() -> None:
    assert sqlite_commits.tune(sqlite3.connect(":memory:")) == "memory"


def test_inside_a_transaction_nothing_changes(tmp_path: Path) -> None:
    writer = connect(tmp_path / "q.sqlite3")
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN")
    writer.execute("INSERT INTO t VALUES (1)")
    assert sqlite_commits.tune(writer) == "delete"
    writer.execute("COMMIT")


@pytest.mark.parametrize("mode", [None, "TRUNCATE", "PERSIST"])
def test_advice_in_a_rollback_journal_points_to_wal(tmp_path: Path, mode: str | None) -> None:
    advice = sqlite_commits.advice(connect(tmp_path / "q.sqlite3", mode))
    assert advice is not None
    assert f"SQLite's {(mode or 'delete').lower()} journal" in advice
    assert "PRAGMA journal_mode=WAL" in advice


def test_no_advice_in_wal_or_in_memory(tmp_path: Path) -> None:
    assert sqlite_commits.advice(connect(tmp_path / "q.sqlite3", "WAL")) is None
    assert sqlite_commits.advice(sqlite3.connect(":memory:")) is None
