"""``smtp_transaction.quoted``: the same envelope address as ``smtplib.quoteaddr``, always."""

from __future__ import annotations

import smtplib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mailroom.compat import PLAIN_ADDR_SPEC
from mailroom.smtp_transaction import _dot_stuffed, quoted

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
atoms = st.lists(st.text(ATEXT, min_size=1, max_size=8), min_size=1, max_size=4).map(".".join)
labels = st.lists(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True), min_size=1, max_size=4
).map(".".join)


@given(local=atoms, domain=labels)
def test_plain_addresses_are_quoted_as_smtplib_quotes_them(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    assert PLAIN_ADDR_SPEC.fullmatch(address), "the fast path is the one under test"
    assert quoted(address) == smtplib.quoteaddr(address)


@given(st.text(max_size=40))
@example("a@x.org\r\nRSET")
@example("Ann <ann@example.com>\nRCPT TO:<eve@example.com>")
@example("\r")
def test_any_string_is_quoted_as_smtplib_quotes_it_but_a_line_break_is_refused(
    address: str,
) -> None:
    if "\r" in address or "\n" in address:
        # smtplib would cut the address short at the break: another address, said nowhere.
        with pytest.raises(ValueError, match="line break"):
            quoted(address)
    else:
        assert quoted(address) == smtplib.quoteaddr(address)


@pytest.mark.parametrize(
    "address",
    [
        "Ann <ann@example.com>",
        '"a b"@example.com',
        "ann@[192.0.2.1]",
        "ann@example.com ",
        "<>",
        "ann@exämple.com",
        "ann(comment)@example.com",
        "a..b@example.com",
    ],
)
def test_other_addresses_go_through_smtplib(address: str) -> None:
    assert quoted(address) == smtplib.quoteaddr(address)


# --- The message's bytes as DATA carries them ------------------------------------------------


def _smtplib_data(message: bytes) -> bytes:
    """What ``smtplib.SMTP.data`` sends for ``message`` (already bytes, CRLF or not)."""
    quoted_body = smtplib._quote_periods(message)  # type: ignore[attr-defined]
    if quoted_body[-2:] != b"\r\n":
        quoted_body += b"\r\n"
    return quoted_body + b".\r\n"


@pytest.mark.parametrize(
    "message",
    [b"", b".", b"..", b".\r\n", b"a\r\n.b\r\n", b"a\n.\n", b"a\r.b", b"\n.\n.", b".x\r\n.y"],
)
def test_a_leading_dot_is_doubled_as_smtplib_doubles_it(message: bytes) -> None:
    assert _dot_stuffed(message) == _smtplib_data(message)


@given(st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b"..", b"\n."])).map(b"".join))
def test_any_bytes_are_stuffed_as_smtplib_stuffs_them(message: bytes) -> None:
    assert _dot_stuffed(message) == _smtplib_data(message)
