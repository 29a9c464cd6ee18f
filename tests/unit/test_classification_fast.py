"""The fast path of a call that returned with nothing refused gives what the general one does."""

from __future__ import annotations

import pytest

from mailroom.classification import accepted, classify
from mailroom.outcomes import DeliveryResult, Verdict
from mailroom.recipients import classify_returned

RECIPIENTS = [
    (),
    ("a@example.com",),
    ("a@example.com", "B@Example.com", "c@example.org"),
    ("a@example.com", "a@example.com"),
    ("üser@exämple.com", "x@[127.0.0.1]"),
]


@pytest.mark.parametrize("recipients", RECIPIENTS)
@pytest.mark.parametrize("sent_count", [None, 1, 3])
def test_accepted_equals_the_general_path(recipients, sent_count) -> None:
    result = DeliveryResult(recipients=recipients, sent_count=sent_count)
    general = classify_returned(result)
    assert classify(result) == general
    assert accepted(recipients) == general
    assert general.verdict is Verdict.SENT
    assert [r.as_json() for r in classify(result).recipients] == [
        r.as_json() for r in general.recipients
    ]


@pytest.mark.parametrize(
    "result",
    [
        DeliveryResult(recipients=("a@x.com",), sent_count=0),
        DeliveryResult(recipients=("a@x.com", "b@x.com"), refused={"b@x.com": (550, "5.1.1 no")}),
        DeliveryResult(recipients=("a@x.com",), refused={"a@x.com": (450, "4.2.0 later")}),
        DeliveryResult(recipients=("a@x.com",), sent_count=1, esp_status={"a@x.com": "rejected"}),
        DeliveryResult(recipients=("a@x.com",), sent_count=1, esp_status={"a@x.com": "queued"}),
    ],
)
def test_anything_else_still_takes_the_general_path(result) -> None:
    assert classify(result) == classify_returned(result)
