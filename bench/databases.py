"""Where each app's benchmark database lives, and making the PostgreSQL ones.

One database per app (and per tag), so no app's tables or locks interfere with another's:
SQLite files in the temporary directory (rollback journal, no WAL: SQLite's default), and
PostgreSQL databases ``mailroom_bench_<app>[_<tag>]`` on 127.0.0.1 as ``postgres`` (trust auth).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from typing import Any

DB_KINDS = ("sqlite", "postgres")
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("BENCH_PG_PORT", "5432")
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")


def database_name(app: str, db: str, tag: str | None = None) -> str:
    tag = os.environ.get("BENCH_DB_TAG", "") if tag is None else tag
    base = f"mailroom_bench_{app}" + (f"_{tag}" if tag else "")
    if db == "sqlite":
        return os.path.join(tempfile.gettempdir(), f"{base}.sqlite3")
    return base


def database_settings(app: str, db: str) -> dict[str, Any]:
    if db == "postgres":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": database_name(app, db),
            "USER": PG_USER,
            "HOST": PG_HOST,
            "PORT": PG_PORT,
        }
    if db == "sqlite":
        # SQLite's default rollback journal, unless a configuration asks for WAL; set on every
        # connection, as the mode is kept in the file and would otherwise leak to the next.
        mode = "WAL" if os.environ.get("BENCH_SQLITE_WAL") else "DELETE"
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": database_name(app, db),
            "OPTIONS": {"init_command": f"PRAGMA journal_mode={mode}"},
        }
    raise ValueError(f"unknown database {db!r}: use sqlite or postgres")


def _psql(sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER, "-d", "postgres", "-qAtc", sql],
        capture_output=True,
        text=True,
        check=False,
    )


def recreate(app: str, db: str, tag: str = "") -> None:
    """An empty database for ``app`` (tables are made by ``migrate`` in the child)."""
    drop(app, db, tag)
    if db == "sqlite":
        return
    name = database_name(app, db, tag)
    result = _psql(f'CREATE DATABASE "{name}"')
    if result.returncode != 0:
        raise RuntimeError(f"cannot create PostgreSQL database {name}: {result.stderr.strip()}")


def drop(app: str, db: str, tag: str = "") -> None:
    """Remove ``app``'s database (a million-row queue takes a gigabyte of disk)."""
    name = database_name(app, db, tag)
    if db == "sqlite":
        remove_sqlite_file(name)
        return
    result = _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if result.returncode != 0:
        raise RuntimeError(f"cannot drop PostgreSQL database {name}: {result.stderr.strip()}")


def remove_sqlite_file(path: str) -> None:
    """Remove the SQLite database at ``path`` and its journal, WAL and shared-memory files,
    and mailroom's outcome log beside it with its own."""
    for base in (path, path + "-mailroom-log"):
        for suffix in ("", "-journal", "-wal", "-shm"):
            if os.path.exists(base + suffix):
                os.remove(base + suffix)


def postgres_version() -> str:
    result = _psql("SHOW server_version")
    return result.stdout.strip() if result.returncode == 0 else "unavailable"
