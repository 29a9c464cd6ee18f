"""rendering.render_simple writes exactly the bytes Django 5.2 renders, or declines."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroom import compat
from mailroom.rendering import render_simple

pytestmark = pytest.mark.skipif(compat.DJANGO_6, reason="render_simple mirrors Django 5.2 only")

PINNED = {"Message-ID": "<175.1.2@host.example.com>", "Date": "Mon, 06 Jan 2025 10:00:00 -0000"}

# Mostly the shapes the fast path takes, with everything that must send it back to Django mixed
# in: non-ASCII, runs of spaces, tabs, line ends, encoded-word look-alikes, long values.
WORD = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12)
ODD = st.sampled_from(
    ["", " ", "  ", "\t", "é", "=?utf-8?q?x?=", "\x0b", "\x00", ";", ",", "\r\n", "\n", "\r"]
)
PLAIN_VALUE = st.lists(WORD.filter(bool), max_size=6).map(" ".join)
VALUE = st.one_of(
    PLAIN_VALUE, PLAIN_VALUE, PLAIN_VALUE, st.lists(st.one_of(WORD, ODD), max_size=12).map(" ".join)
)
ADDRESS = st.one_of(
    st.just("someone@example.com"),
    st.from_regex(r"[a-z0-9.+_-]{1,20}@[a-z0-9-]{1,15}\.[a-z]{2,4}", fullmatch=True),
    st.sampled_from(["Some One <someone@example.com>", "Jörg <j@example.com>", "a@b.c, d@e.f"]),
)
PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
LINE = st.one_of(
    PRINTABLE,
    PRINTABLE,
    PRINTABLE,
    PRINTABLE,
    st.text(max_size=20),
    st.sampled_from(["x" * 998, "x" * 999, "From here", ".", "\x0c", "\x1c", "\x85"]),
)
BODY = st.tuples(
    st.lists(LINE, max_size=8), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans()
).map(lambda t: t[1].join(t[0]) + (t[1] if t[2] else ""))
HEADER_NAME = st.one_of(
    st.sampled_from(["X-Tag", "List-Unsubscribe", "Precedence", "X-A:B", "X B", "to", "Cc"]),
    st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True),
)


def django_bytes(message: EmailMessage) -> bytes:
    return bytes(message.message().as_bytes(linesep="\r\n"))


@settings(max_examples=500, deadline=None)
@given(
    subject=VALUE,
    body=BODY,
    sender=ADDRESS,
    to=st.lists(ADDRESS, max_size=3),
    cc=st.lists(ADDRESS, max_size=1),
    reply_to=st.lists(ADDRESS, max_size=1),
    extra=st.dictionaries(HEADER_NAME, VALUE, max_size=2),
    subtype=st.sampled_from(["plain", "plain", "plain", "html", "csv"]),
    encoding=st.sampled_from([None, None, None, "utf-8", "iso-8859-1"]),
)
def test_same_bytes_as_django_or_none(
    subject, body, sender, to, cc, reply_to, extra, subtype, encoding
) -> None:
    message = EmailMessage(
        subject, body, sender, to, cc=cc, reply_to=reply_to, headers={**extra, **PINNED}
    )
    message.content_subtype = subtype
    message.encoding = encoding
    fast = render_simple(message)
    if fast is not None:
        assert fast == django_bytes(message)


def test_the_common_message_takes_the_fast_path() -> None:
    message = EmailMessage(
        "Benchmark message 1",
        ("x" * 63 + "\n") * 16,
        "bench@example.com",
        ["r1@example.com", "Some One <r2@example.com>"],
        headers=dict(PINNED),
    )
    fast = render_simple(message)
    assert fast is not None
    assert fast == django_bytes(message)
    assert compat.render_mime(message) == fast


@pytest.mark.parametrize(
    "change",
    [
        lambda m: setattr(m, "body", "héllo"),
        lambda m: setattr(m, "subject", "x" * 80),
        lambda m: setattr(m, "subject", "two  spaces"),
        lambda m: setattr(m, "body", "x" * 999),
        lambda m: m.attach("a.txt", "text", "text/plain"),
        lambda m: m.extra_headers.pop("Date"),
        lambda m: m.extra_headers.update({"From": "other@example.com"}),
        lambda m: setattr(m, "encoding", "iso-8859-1"),
        # A line end inside a value would otherwise read as a header of its own.
        lambda m: m.extra_headers.update({"X-Tag": "a\r\nX-Injected: b"}),
        lambda m: m.extra_headers.update({"X-Tag": "a\nX-Injected: b"}),
        lambda m: setattr(m, "subject", "Hi\r\nBcc: c@example.com"),
        lambda m: m.extra_headers.update({"X-Tag": "a\rb"}),
        # A trailing one too (a pattern anchored with $ once let it through).
        lambda m: setattr(m, "to", ["b@example.com\n"]),
        lambda m: setattr(m, "subject", "Hi\n"),
    ],
)
def test_anything_else_is_left_to_django(change) -> None:
    message = EmailMessage("Hi", "Body\n", "a@example.com", ["b@example.com"], headers=dict(PINNED))
    assert render_simple(message) is not None
    change(message)
    assert render_simple(message) is None


def test_subclasses_are_left_to_django() -> None:
    message = EmailMultiAlternatives("Hi", "Body\n", "a@example.com", ["b@example.com"])
    message.extra_headers.update(PINNED)
    assert render_simple(message) is None


@pytest.mark.parametrize(
    "body",
    [
        "a" * 600 + "\x0c" + "b" * 600,  # one line to the email package, two to splitlines()
        "x" * 998 + "\n" + "y" * 10,
        "x" * 999,
        "line\r\nmixed\rends\n",
    ],
)
def test_bodies_at_the_edges_render_as_django_does(body) -> None:
    message = EmailMessage("S", body, "a@example.com", ["b@example.com"])
    message.extra_headers.update({"Date": "Sat, 28 Nov 2026 10:00:00 -0000", "Message-ID": "<1@x>"})
    fast = render_simple(message)
    assert fast is None or fast == django_bytes(message)
