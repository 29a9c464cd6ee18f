"""The Date header enqueue pins is ``formatdate(now, localtime=True)``, made once a second."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from mailroom.enqueueing import _date_header


@pytest.fixture
def restore_zone() -> Iterator[None]:
    before = os.environ.get("TZ")
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_it_is_what_the_email_package_makes_for_each_second() -> None:
    start = 1_800_000_000.25
    for offset in (0, 0.5, 0.74, 1, 59.9, 3600):
        assert _date_header(start + offset) == formatdate(start + offset, localtime=True)


def test_a_change_of_time_zone_in_the_same_second_is_not_missed(restore_zone: None) -> None:
    moment = 1_800_000_000.0
    os.environ["TZ"] = "UTC"
    time.tzset()
    utc = _date_header(moment)
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    new_york = _date_header(moment)
    assert utc.endswith("+0000")
    assert new_york.endswith("-0500")
    assert new_york == formatdate(moment, localtime=True)
