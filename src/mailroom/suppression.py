"""The suppression list: recipients mailroom will not send to, and why.

An address gets on the list by hand (``mailroom suppress``) or, with ``MAILROOM["AUTO_SUPPRESS"]``,
when a server refused it for good because the mailbox does not exist. A suppressed recipient is
dropped from new messages at enqueue and from queued ones at delivery; the reason is recorded on
the message (``refused_recipients``), and a message left with no recipient fails with it.

Addresses are compared as lower-cased addr-specs (``user@example.com``, an IDN domain in its
ASCII form), whatever display name or case the message used. Every lookup is one query for a
whole batch, never one per address.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from functools import cache
from typing import Any

from django.db import connection, connections, router
from django.db.models.signals import post_save

from . import compat
from .conf import get_settings
from .matching import parse_enhanced
from .models import Attempt, Message, Status, Suppression, SuppressionSource

logger = logging.getLogger(__name__)

#: Enhanced status codes (RFC 3463) that say the address itself is bad, for good: no such
#: mailbox (5.1.1), no such domain (5.1.2), a malformed address (5.1.3), a domain that accepts
#: no mail (5.1.10, RFC 7505). 5.1.7 and 5.1.8 are about the *sender* and are not listed.
AUTO_SUPPRESS_CODES = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.10"})
#: django-anymail recipient statuses that mean the provider will never deliver to the address.
AUTO_SUPPRESS_ESP_STATUSES = frozenset({"invalid", "rejected"})

# Addresses per lookup query. One query covers any ordinary call; a bulk enqueue of more distinct
# recipients than this is split, because databases cap the parameters of one statement
# (older SQLite 32,766; MySQL 65,535). PostgreSQL takes the addresses as one array parameter.
_LOOKUP_CHUNK = 10_000

_REASON_PREFIX = "suppressed: "


# A bare addr-spec, as stored in a message's envelope: lower-casing it is all normalize() would
# do, and the delivery-time lookup runs for every recipient of every batch. For fullmatch:
# "$" would let a trailing newline through, and the address be stored with it.
_BARE_ADDR_SPEC = re.compile(r"[^\s<>\"(),;:\\@]+@[^\s<>\"(),;:\\@]+")


def normalize(address: str) -> str:
    """The form an address is stored and compared in; ValueError if it is no address."""
    if _BARE_ADDR_SPEC.fullmatch(address) and address.isascii():
        return address.lower()
    envelope = compat.envelope_address(address)
    # Django 5.2's envelope form keeps a display name ("Name <a@b>"); only the addr-spec counts.
    _, spec = parseaddr(envelope)
    spec = (spec or envelope).strip().lower()
    if "@" not in spec:
        raise ValueError(f"not an email address: {address!r}")
    return spec


def _normalized(addresses: Iterable[str]) -> dict[str, str]:
    """address as given -> normalized form, leaving out what is no address at all."""
    forms: dict[str, str] = {}
    for address in addresses:
        if address in forms:
            continue
        try:
            forms[address] = normalize(address)
        except (ValueError, TypeError):
            continue
    return forms


def suppressed(addresses: Iterable[str]) -> dict[str, str]:
    """The suppressed ones among ``addresses``: address as given -> the recorded reason."""
    forms = _normalized(addresses)
    keys = sorted(set(forms.values()))
    if not keys:
        return {}
    alias = router.db_for_read(Suppression)
    if connections[alias].vendor == "postgresql":
        reasons = _reasons_any(alias, keys)
    else:
        reasons = _reasons_in(keys)
    return {given: reasons[form] for given, form in forms.items() if form in reasons}


def _reasons_in(keys: list[str]) -> dict[str, str]:
    reasons: dict[str, str] = {}
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start : start + _LOOKUP_CHUNK]
        reasons.update(
            Suppression.objects.filter(address__in=chunk).values_list("address", "reason")
        )
    return reasons


@cache
def _any_lookup(alias: str) -> str:
    quote = connections[alias].ops.quote_name
    meta = Suppression._meta
    address = quote(meta.get_field("address").column)
    reason = quote(meta.get_field("reason").column)
    return f"SELECT {address}, {reason} FROM {quote(meta.db_table)} WHERE {address} = ANY(%s)"


def _reasons_any(alias: str, keys: list[str]) -> dict[str, str]:
    """PostgreSQL: the addresses as one array parameter. An IN list of a hundred placeholders
    costs the ORM and the driver time per address; an array is one value, with no cap on
    parameters to split around. A Django cursor, so the query is logged like any other."""
    with connections[alias].cursor() as cursor:
        cursor.execute(_any_lookup(alias), [keys])
        return dict(cursor.fetchall())


def suppress(
    addresses: Iterable[str],
    reason: str = "",
    source: SuppressionSource | str = SuppressionSource.MANUAL,
) -> list[str]:
    """Put ``addresses`` on the list. Returns the normalized addresses that were not on it.

    By hand, the operator's reason replaces the one recorded; automatically, an address already
    listed keeps its entry (the first reason, and a manual entry, win). ValueError for something
    that is no address, before anything is written.
    """
    source = SuppressionSource(source)
    wanted = sorted({normalize(address) for address in addresses})
    _forget_emptiness()
    if not wanted:
        return []
    existing = set(Suppression.objects.filter(address__in=wanted).values_list("address", flat=True))
    entries = [Suppression(address=a, reason=reason, source=source) for a in wanted]
    if source is SuppressionSource.MANUAL:
        # MySQL/MariaDB's ON DUPLICATE KEY takes no conflict target (and needs none).
        target = ["address"] if connection.features.supports_update_conflicts_with_target else None
        Suppression.objects.bulk_create(
            entries, update_conflicts=True, unique_fields=target, update_fields=["reason", "source"]
        )
    else:
        # Two workers may suppress the same address at once: the second insert is a no-op.
        Suppression.objects.bulk_create(entries, ignore_conflicts=True)
    added = [a for a in wanted if a not in existing]
    for address in added:
        logger.info("mailroom: %s suppressed (%s): %s", address, source.value, reason)
    return added


def unsuppress(addresses: Iterable[str]) -> int:
    """Take ``addresses`` off the list. Returns how many were on it."""
    wanted = sorted(set(_normalized(addresses).values()))
    if not wanted:
        return 0
    deleted, _ = Suppression.objects.filter(address__in=wanted).delete()
    return deleted


def refusal(reason: str) -> str:
    """How a suppressed recipient is recorded in ``Message.refused_recipients``."""
    return f"{_REASON_PREFIX}{reason}" if reason else _REASON_PREFIX.rstrip(": ")


def all_suppressed_reason(dropped: Mapping[str, str]) -> str:
    """A message's ``reason`` when suppression left it with no recipient."""
    listed = "; ".join(f"{address} ({reason})" for address, reason in dropped.items())
    return f"all recipients are suppressed: {listed}"


@dataclass(frozen=True, kw_only=True)
class Drop:
    """Suppressed recipients found on one queued message, and what that leaves.

    ``pending`` and ``refused`` are the values to write to the row's ``pending_recipients`` and
    ``refused_recipients``; when ``nothing_left`` the message must fail with ``reason``.
    """

    message: Message
    #: address (as on the message) -> the suppression's reason.
    dropped: Mapping[str, str]
    pending: list[str]
    refused: dict[str, str]

    @property
    def nothing_left(self) -> bool:
        return not self.pending

    @property
    def reason(self) -> str:
        return all_suppressed_reason(self.dropped)


def drop_suppressed(rows: Sequence[Message]) -> dict[int, Drop]:
    """For a batch about to be delivered: the rows with suppressed pending recipients, by pk.

    One lookup for the whole batch. Rows are not changed, in memory or in the database: the
    caller writes ``pending``/``refused`` (and fails the rows with ``nothing_left``).
    """
    found = suppressed({address for row in rows for address in row.pending})
    if not found:
        return {}
    drops: dict[int, Drop] = {}
    for row in rows:
        pending = row.pending
        dropped = {a: found[a] for a in pending if a in found}
        if not dropped:
            continue
        refused = dict(row.refused_recipients or {})
        refused.update({a: refusal(reason) for a, reason in dropped.items()})
        drops[row.pk] = Drop(
            message=row,
            dropped=dropped,
            pending=[a for a in pending if a not in dropped],
            refused=refused,
        )
    return drops


# Most sites have an empty suppression list, and a lookup on every enqueue would be a round
# trip for nothing. Once the list is seen empty, enqueue skips the lookup for a few seconds.
# An address another process suppresses meanwhile is still caught: delivery looks again.
_EMPTY_FOR_SECONDS = 5.0
_empty_until = 0.0


def _known_empty() -> bool:
    global _empty_until
    now = time.monotonic()
    if now < _empty_until:
        return True
    if Suppression.objects.exists():
        return False
    _empty_until = now + _EMPTY_FOR_SECONDS
    return True


def _forget_emptiness(**_: Any) -> None:
    global _empty_until
    _empty_until = 0.0


# An entry saved any other way (the admin, the shell) is seen at once by this process too.
post_save.connect(_forget_emptiness, sender=Suppression, dispatch_uid="mailroom-suppression")


def apply_at_enqueue(rows: Sequence[Message]) -> list[Message]:
    """Drop suppressed recipients from rows about to be inserted. Returns the rows that are left
    with no recipient, now ``failed`` (they are still stored: nothing is lost).

    Only the envelope changes: ``pending_recipients`` lists whom to deliver to, so both the SMTP
    path and the generic one (which restricts to/cc/bcc to the pending envelope) leave the
    suppressed out, while the headers still show the To and Cc the sender wrote.
    """
    if _known_empty():
        return []
    found = suppressed({address for row in rows for address in row.recipients})
    failed = []
    for row in rows if found else ():
        dropped = {a: found[a] for a in row.recipients if a in found}
        if not dropped:
            continue
        row.pending_recipients = [a for a in row.recipients if a not in dropped]
        row.refused_recipients = {a: refusal(reason) for a, reason in dropped.items()}
        if not row.pending_recipients:
            row.status = Status.FAILED
            row.reason = all_suppressed_reason(dropped)
            failed.append(row)
    return failed


# --- Automatic suppression --------------------------------------------------------------


def addresses_to_auto_suppress(attempt: Attempt) -> dict[str, str]:
    """Recipients this attempt refused for good because the address is bad: address -> detail."""
    found: dict[str, str] = {}
    for address, result in (attempt.recipients or {}).items():
        if not isinstance(result, Mapping) or result.get("state") != "failed":
            continue
        detail = str(result.get("detail", ""))
        if _bad_address(detail):
            found[address] = detail
    return found


def _bad_address(detail: str) -> bool:
    if detail.startswith("ESP status: "):
        return detail.removeprefix("ESP status: ").strip() in AUTO_SUPPRESS_ESP_STATUSES
    # An SMTP refusal is recorded as "550 5.1.1 text": the reply code, then the reply text.
    code, _, text = detail.partition(" ")
    return code.startswith("5") and parse_enhanced(text) in AUTO_SUPPRESS_CODES


def auto_suppress(sender: Any, *, attempt: Attempt | None = None, **kwargs: Any) -> None:
    """Called by ``recording`` for each attempt some recipient refused for good, before the
    signals are sent (it takes a receiver's arguments, and may be connected as one).

    Reads ``MAILROOM["AUTO_SUPPRESS"]`` at every call, so override_settings just works.
    """
    if attempt is None or not get_settings().auto_suppress:
        return
    bad = addresses_to_auto_suppress(attempt)
    if not bad:
        return
    # One entry per reason, usually one: a server refuses unknown mailboxes with one text.
    by_reason: dict[str, list[str]] = {}
    for address, detail in bad.items():
        by_reason.setdefault(detail, []).append(address)
    for detail, addresses in by_reason.items():
        try:
            suppress(addresses, reason=detail, source=SuppressionSource.AUTO)
        except ValueError:  # an address the server refused that we cannot even parse
            logger.warning("mailroom: cannot suppress %r: not an address", addresses)
