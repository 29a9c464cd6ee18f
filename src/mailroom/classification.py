"""Classification: what one delivery attempt means, as a :class:`~mailroom.outcomes.Verdict`.

:func:`classify` turns a :class:`~mailroom.outcomes.DeliveryResult` into a
:class:`~mailroom.outcomes.Classification`. It is pure (no database, network, clock or settings)
and it never raises: whatever it does not recognise is retried within the message's budget and
flagged ``unexpected``, so an unknown error can neither stall the queue nor lose a message.

A raised error is matched against the user's rules first, then against :data:`TABLE`, a tuple of
:class:`Row` values tried in order. A row names exception classes by dotted name as they appear
in the exception's MRO (so this module never imports anymail, botocore, requests or sparkpost),
adds optional conditions (reply code or HTTP status, enhanced status code, text, provider error
code, errno) and gives a verdict, or names a small handler for the per-recipient cases.

The parts live by concept: :mod:`mailroom.matching` reads the facts out of an exception and
defines :class:`Row`; :mod:`mailroom.rules` holds :data:`TABLE` itself, as data;
:mod:`mailroom.recipients` decides the per-recipient outcomes (a call that returned, SMTP and
anymail refusals); :mod:`mailroom.rules_esp` reads ESP and AWS API errors. This module ties them
together and is the public entry point: everything in ``__all__`` is importable from here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from mailroom.matching import Facts, Row, describe, read_facts, unexpected
from mailroom.outcomes import (
    Classification,
    DeliveryResult,
    RecipientResult,
    RecipientState,
    Verdict,
)
from mailroom.recipients import NOTHING_SENT as NOTHING_SENT  # importable from here, as before
from mailroom.recipients import classify_returned
from mailroom.rules import TABLE

__all__ = ["TABLE", "Row", "Rule", "classify", "describe", "find_row"]

logger = logging.getLogger(__name__)

#: A user rule: return a Classification or a bare Verdict to decide, or None for "not mine".
Rule = Callable[[BaseException], Classification | Verdict | None]


def classify(result: DeliveryResult, *, rules: Sequence[Rule] = ()) -> Classification:
    """Say what ``result`` means. User ``rules`` are tried first; this never raises."""
    error = result.error
    try:
        if error is None:
            if result.sent_count != 0 and not result.refused and not result.esp_status:
                return accepted(result.recipients)
            return classify_returned(result)
        for rule in rules:
            decided = _apply_user_rule(rule, error)
            if decided is not None:
                return decided
        return _classify_error(error, result)[1]
    except Exception:  # a bug here must not stop the worker: retry within budget, loudly
        logger.exception("classification failed; treating the attempt as unexpected")
        if error is None:
            return Classification(
                verdict=Verdict.RETRY, reason="unexpected result", unexpected=True
            )
        return unexpected(error)


#: The reason of a call that returned with nothing refused (``recipients.classify_returned``).
ACCEPTED = "accepted for delivery"
_SENT = RecipientState.SENT


def accepted(recipients: tuple[str, ...]) -> Classification:
    """What ``classify_returned`` makes of a call that returned with no refusal, no ESP
    status and a sent count other than 0 (or none, as on the SMTP path): the common case,
    made directly rather than through the per-recipient merge, which has nothing to merge
    then. Equal to ``classify_returned``'s result, field for field
    (tests/unit/test_classification_fast.py)."""
    return Classification(
        verdict=Verdict.SENT,
        reason=ACCEPTED,
        recipients=tuple([RecipientResult(address=a, state=_SENT) for a in recipients]),
    )


def find_row(error: BaseException, result: DeliveryResult | None = None) -> Row | None:
    """Return the built-in row that decides ``error``, or None if none does (for debugging)."""
    return _classify_error(error, result or DeliveryResult(recipients=()))[0]


def _apply_user_rule(rule: Rule, error: BaseException) -> Classification | None:
    try:
        decided = rule(error)
    except Exception:
        logger.warning("classification rule %r raised; ignoring it", rule, exc_info=True)
        return None
    if decided is None or isinstance(decided, Classification):
        return decided
    if isinstance(decided, Verdict):
        facts = read_facts(error)
        return Classification(
            verdict=decided,
            reason=describe(error),
            code=facts.code,
            enhanced_code=facts.enhanced_code,
        )
    logger.warning("classification rule %r returned %s; ignoring it", rule, type(decided).__name__)
    return None


def _classify_error(
    error: BaseException, result: DeliveryResult
) -> tuple[Row | None, Classification]:
    facts = read_facts(error)
    for row in TABLE:
        if row.matches(facts):
            if row.handler is not None:
                return row, row.handler(error, facts, result)
            return row, _from_row(row, facts)
    return None, unexpected(error, facts)


def _from_row(row: Row, facts: Facts) -> Classification:
    assert row.verdict is not None
    return Classification(
        verdict=row.verdict,
        reason=f"{row.reason}: {facts.summary}" if facts.summary else row.reason,
        code=facts.code,
        enhanced_code=facts.enhanced_code,
        retry_after=facts.retry_after if facts.retry_after is not None else row.retry_after,
    )
