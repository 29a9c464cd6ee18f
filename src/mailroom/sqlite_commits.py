"""How the outcome writer's own SQLite connection commits.

By default every sent message's outcome is its own transaction (see ``docs/explanation.md``),
so on SQLite the cost of one commit is paid once per message. What that commit costs depends
on the journal mode, and two of the modes can be chosen per connection without changing the
file or what any other connection does:

- WAL (a property of the file, the owner's choice): ``synchronous = NORMAL``, SQLite's own
  advice for WAL. A commit survives the process dying; a power cut can lose the last few
  commits but never corrupt the file. Such a lost outcome means its message is sent again
  once its lease runs out, as after any crash.
- DELETE, the default rollback journal: ``journal_mode = TRUNCATE``. The same journal and
  the same safety; the commit truncates the journal to zero bytes instead of deleting it, so
  no commit unlinks a file in the database's directory. That costs one more fdatasync (of
  the truncated journal: 5 per commit against 4, counted with strace) and is still cheaper:
  measured on the benchmark machine, 512 -> 260 us of CPU and 876 -> 609 us per commit. A
  zero-byte journal is never "hot", so other connections, in any rollback mode, read and
  write the file as before; it stays beside the database as ``<name>-journal``.

Every other mode (PERSIST, MEMORY, OFF, an in-memory database) is left as it is.

:func:`advice` is what ``mailroom worker`` says at its start about the file's mode: in a
rollback journal each sent message waits for the disk, and WAL is the owner's to choose.
"""

from __future__ import annotations

import sqlite3

#: The modes whose commit waits for the disk several times (four fdatasync calls in DELETE).
_ROLLBACK_JOURNALS = frozenset({"delete", "truncate", "persist"})


def advice(raw: sqlite3.Connection) -> str | None:
    """A line for someone starting a worker on ``raw``'s file, if its journal mode holds
    sending back: the rollback journals. None in any other mode (WAL, an in-memory database)."""
    mode = journal_mode(raw)
    if mode not in _ROLLBACK_JOURNALS:
        return None
    return (
        f"SQLite's {mode} journal: each message sent waits for a commit that syncs the disk "
        "several times; WAL mode makes that commit far cheaper "
        '("init_command": "PRAGMA journal_mode=WAL", see docs/workers.md)'
    )


def journal_mode(raw: sqlite3.Connection) -> str:
    """The journal mode ``raw`` runs in, lower-cased."""
    (mode,) = raw.execute("PRAGMA journal_mode").fetchone()
    return str(mode).lower()


def in_rollback_journal(raw: sqlite3.Connection) -> bool:
    """Whether ``raw`` commits through a rollback journal (DELETE, TRUNCATE, PERSIST)."""
    return journal_mode(raw) in _ROLLBACK_JOURNALS


def tune(raw: sqlite3.Connection) -> str:
    """Tune ``raw`` (the writer's own connection) for one commit per message.

    Returns the journal mode the connection runs in afterwards, lower-cased.
    """
    mode = journal_mode(raw)
    if mode == "wal":
        # synchronous is never relaxed in a rollback-journal mode, where it could corrupt
        # the file.
        raw.execute("PRAGMA synchronous = NORMAL")
    elif mode == "delete" and not raw.in_transaction:
        # A journal mode cannot change inside a transaction (SQLite refuses quietly).
        (mode,) = raw.execute("PRAGMA journal_mode = TRUNCATE").fetchone()
        mode = str(mode).lower()
    return mode
