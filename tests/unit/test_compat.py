"""compat.envelope_address's shortcut for plain addresses agrees with Django's own parsing."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroom import compat

ATOM = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-",
    min_size=1,
    max_size=12,
)
LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)


def slow(address: str) -> str:
    """The same function with the shortcut turned off."""
    pattern = compat.PLAIN_ADDR_SPEC
    compat.PLAIN_ADDR_SPEC = re.compile("(?!)")
    try:
        return compat.envelope_address(address)
    finally:
        compat.PLAIN_ADDR_SPEC = pattern


@settings(max_examples=200, deadline=None)
@given(local=st.lists(ATOM, min_size=1, max_size=3), domain=st.lists(LABEL, min_size=1, max_size=3))
def test_plain_addresses_come_out_as_django_would_give_them(local, domain) -> None:
    address = ".".join(local) + "@" + ".".join(domain)
    assert compat.PLAIN_ADDR_SPEC.fullmatch(address)
    assert compat.envelope_address(address) == slow(address)


@pytest.mark.parametrize(
    "address",
    [
        "Jo <jo@example.com>",
        "jo@exämple.com",
        '"a b"@example.com',
        "a@b\\nBcc: x@y",
        "a@b\r\n",
        "a@b.c\n",
    ],
)
def test_anything_else_takes_the_full_parse(address) -> None:
    assert not compat.PLAIN_ADDR_SPEC.fullmatch(address)
