"""What of a claimed message's content is held in memory, and reading the rest when needed.

A claim brings each message's MIME bytes up to ``claiming.INLINE_MIME`` and no ``payload``
(the message again as JSON, attachments included). Two kinds of row need more:

- A row rendered at enqueue (SMTP backends) goes out as its stored bytes. Bytes over the
  limit are read when the message is about to be sent (:func:`read_mime`), or ahead of that
  while the message before it is with the server (:func:`prefetch_mime`), and let go once it
  is sent (:func:`let_go`).
- A row without stored bytes (ESP and other backends) is rebuilt from its payload.
  :func:`load_payloads` reads the payloads of a batch in one query, up to
  :data:`INLINE_PAYLOAD` each; a bigger one is read when its message is rebuilt (Django's
  deferred field) and let go once it is sent.

So a batch of messages with large attachments, and the batch claimed ahead, never hold all of
them in memory at once: a hundred 10 MB messages would be a gigabyte per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import connections, router
from django.db.models import Case, F, Func, IntegerField, JSONField, When

from . import claiming, contents, pg_binary
from .models import Message, MessageContent

logger = logging.getLogger(__name__)

#: A payload comes with its batch up to this size (as stored: on PostgreSQL the size of the
#: jsonb value, compressed if PostgreSQL compressed it); a bigger one is read when it is used.
INLINE_PAYLOAD = 256 * 1024

#: Set on a content whose payload was left unread by :func:`load_payloads`.
_PAYLOAD_READ_LATE = "_mailroom_payload_read_late"


class _StoredSize(Func):
    """The stored size of a column: LENGTH of the JSON text on SQLite (characters) and
    MySQL/MariaDB (bytes), ``pg_column_size`` of the jsonb on PostgreSQL, where LENGTH takes
    no jsonb and turning it into text would make the server build every payload's text."""

    function = "LENGTH"
    output_field = IntegerField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="pg_column_size", **extra)


def load_payloads(rows: Sequence[Message]) -> None:
    """Fill in the stored message of the rows that will need it, in one query, up to
    INLINE_PAYLOAD each; a bigger one stays deferred, read when it is used.

    Rows with stored MIME bytes go out as those bytes and need no payload. A row without
    content is left so: delivering it says so.
    """
    wanted: dict[int, MessageContent] = {}
    for row in rows:
        content = contents.attached(row)
        # Read without triggering a deferred field's load: a big message's bytes are
        # deferred, and it needs no payload either.
        if content is not None and content.__dict__.get("mime", b"") is None:
            wanted[row.pk] = content
    if not wanted:
        return
    stored = (
        MessageContent.objects.filter(pk__in=list(wanted))
        .annotate(_mailroom_size=_StoredSize("payload"))
        .values_list(
            "pk",
            Case(
                When(_mailroom_size__lte=INLINE_PAYLOAD, then=F("payload")),
                default=None,
                output_field=JSONField(),
            ),
            "_mailroom_size",
        )
    )
    for pk, payload, size in stored:
        content = wanted[pk]
        if size is not None and size > INLINE_PAYLOAD:
            content.__dict__[_PAYLOAD_READ_LATE] = True
        else:
            content.payload = payload


def read_mime(content: MessageContent) -> bytes | None:
    """``content``'s MIME bytes: those the claim brought, or, for a message bigger than
    INLINE_MIME, read now (and not kept on it, so that they are let go once it is sent)."""
    if "mime" in content.__dict__:
        return None if content.mime is None else bytes(content.mime)
    db = connections[content._state.db or router.db_for_read(MessageContent)]
    table = db.ops.quote_name(MessageContent._meta.db_table)
    column = db.ops.quote_name(MessageContent._meta.get_field("mime").column)
    link = db.ops.quote_name(MessageContent._meta.pk.column)  # type: ignore[union-attr]
    sql = f"SELECT {column} FROM {table} WHERE {link} = %s"
    found = pg_binary.fetchall(db, sql, [content.pk])
    if not found or found[0][0] is None:
        return None
    return bytes(found[0][0])


def prefetch_mime(row: Message) -> None:
    """Read ``row``'s MIME bytes now if the claim left them in the database (bigger than
    INLINE_MIME), so that sending it does not wait for them. Called while the message before
    it is with the server: the database is idle then (its outcome is not written yet, the one
    before is). A failure is left for the read at send time to meet and report."""
    content = contents.attached(row)
    if content is None or "mime" in content.__dict__:
        return
    try:
        content.__dict__["mime"] = read_mime(content)
    except Exception as exc:  # the read when it is sent says what went wrong
        logger.debug("mailroom: message %s: bytes not read ahead: %s", row.pk, exc)


def mime_at_hand(row: Message) -> bytes | memoryview | None:
    """``row``'s MIME bytes if they are in memory (brought by the claim or read ahead), else
    None: never a query."""
    content = contents.attached(row)
    return None if content is None else content.__dict__.get("mime")


def let_go(row: Message) -> None:
    """Let go of what of ``row``'s content was read for it alone (it has been sent, or
    tried): MIME bytes over INLINE_MIME, a payload over INLINE_PAYLOAD. A batch keeps only
    what its claim brought."""
    content = contents.attached(row)
    if content is None:
        return
    held = content.__dict__
    mime = held.get("mime")
    if mime is not None and len(mime) > claiming.INLINE_MIME:
        del held["mime"]
    if held.get(_PAYLOAD_READ_LATE):
        held.pop("payload", None)
