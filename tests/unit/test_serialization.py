"""Specification of mailroom.serialization: an EmailMessage stored as JSON and rebuilt.

"Round trip" here always goes through real JSON text, as the database does, and "renders the
same" compares ``message().as_bytes()`` with the random MIME boundaries normalised.
"""

from __future__ import annotations

import base64
import datetime
import email.policy
import json
import re
import sys
import warnings
from collections.abc import Callable
from email.charset import Charset
from email.message import Message, MIMEPart
from email.mime.base import MIMEBase
from email.mime.image import MIMEImage
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import django
import pytest
from anymail.message import AnymailMessage
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.message import EmailAlternative, EmailAttachment
from django.utils.functional import lazy
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroom import anymail_extras, payload_checks, serialization
from mailroom.exceptions import SerializationError, UndecodableMessage
from mailroom.serialization import from_payload, to_payload

# mailroom pins both at enqueue; with them fixed, rendering is deterministic but for boundaries.
PINNED = {"Message-ID": "<pinned.1@example.com>", "Date": "Tue, 01 Jan 2030 12:00:00 -0000"}

needs_django_6 = pytest.mark.skipif(
    django.VERSION < (6, 0),
    reason="Django 5.2 cannot attach an email.message.MIMEPart (new in 6.0)",
)
needs_django_5 = pytest.mark.skipif(
    django.VERSION >= (6, 0), reason="Django 6.0 removed mixed_subtype and alternative_subtype"
)


def make_message(cls: type[EmailMessage] = EmailMultiAlternatives, **kwargs: Any) -> Any:
    kwargs.setdefault("subject", "Hello")
    kwargs.setdefault("body", "Plain body")
    kwargs.setdefault("from_email", "sender@example.com")
    kwargs.setdefault("to", ["to@example.com"])
    kwargs["headers"] = {**PINNED, **kwargs.get("headers", {})}
    return cls(**kwargs)


def round_trip(message: EmailMessage) -> Any:
    return from_payload(json.loads(json.dumps(to_payload(message))))


def normalise_boundaries(raw: bytes) -> bytes:
    """Replace each MIME boundary (random per render) by a placeholder, in order of appearance."""
    boundaries: list[bytes] = []
    for boundary in re.findall(rb'boundary="([^"]+)"', raw):
        if boundary not in boundaries:
            boundaries.append(boundary)
    for index, boundary in enumerate(boundaries):
        raw = raw.replace(boundary, b"BOUNDARY-%d" % index)
    return raw


def rendered(message: EmailMessage) -> bytes:
    return normalise_boundaries(message.message().as_bytes())


def attach_legacy(message: EmailMessage, part: MIMEBase) -> None:
    # Django 6 warns that MIMEBase attachments are deprecated; that is Django's business here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        message.attach(part)


# --------------------------------------------------------------------------- builders: one per case


def with_non_ascii_everywhere() -> EmailMessage:
    return make_message(
        subject="Grüße, 東京 — ça va ? " * 4,
        body="Zoë wrote: naïve café ☕\nSecond line.",
        from_email="Jörg Müller <jorg@example.com>",
        to=["Zoë Ålander <zoe@example.com>", "user@exämple.com"],
    )


def with_html_body() -> EmailMessage:
    message = make_message(body="<p>Only <b>HTML</b></p>")
    message.content_subtype = "html"
    return message


def with_all_recipient_kinds() -> EmailMessage:
    return make_message(
        to=["a@example.com", "B <b@example.com>"],
        cc=["c@example.com"],
        bcc=["hidden@example.com"],
        reply_to=["Replies <reply@example.com>"],
    )


def with_extra_headers() -> EmailMessage:
    return make_message(
        headers={"X-Campaign": "spring", "X-Note": "é" * 120, "List-Unsubscribe": "<mailto:u@x>"}
    )


def with_date_header_as_datetime() -> EmailMessage:
    when = datetime.datetime(2030, 1, 1, 12, tzinfo=datetime.timezone.utc)
    return make_message(headers={"Date": when})


def with_encoding() -> EmailMessage:
    message = make_message(body="Français", subject="Été")
    message.encoding = "iso-8859-1"
    message.attach("notes.txt", "déjà vu", "text/plain")
    return message


def with_html_alternative() -> EmailMessage:
    message = make_message(body="Text version")
    message.attach_alternative("<p>HTML <i>version</i> — ünïcode</p>", "text/html")
    message.attach_alternative(b'{"json": true}', "application/json")
    return message


def with_text_and_binary_attachments() -> EmailMessage:
    message = make_message()
    message.attach("notes.txt", "Some text — with ünïcode", "text/plain")
    message.attach("report.bin", bytes(range(256)), "application/octet-stream")
    message.attach("photo été " * 8 + ".png", b"\x89PNG\r\n\x1a\n", "image/png")
    return message


def with_django_message_attached() -> EmailMessage:
    inner = make_message(EmailMessage, subject="Forwarded ü", body="Inner body")
    message = make_message()
    message.attach("forwarded.eml", inner, "message/rfc822")
    return message


def with_stdlib_message_attached() -> EmailMessage:
    inner = Message()
    inner["Subject"] = "Legacy message " + "x" * 100
    inner.set_payload("inner body")
    message = make_message()
    message.attach("legacy.eml", inner, "message/rfc822")
    return message


def with_legacy_mimebase_attachment() -> EmailMessage:
    image = MIMEImage(b"GIF89a\x01\x00\x01\x00", "gif")
    image.add_header("Content-ID", "<logo@example.com>")
    image.add_header("Content-Disposition", "inline", filename="a long file name " * 5 + ".gif")
    message = make_message()
    attach_legacy(message, image)
    attach_legacy(message, MIMEText("legacy text ü", "plain", "utf-8"))
    return message


def with_inline_mimepart_image() -> EmailMessage:
    image = MIMEPart()
    image.set_content(
        b"\x89PNG\r\n\x1a\n",
        maintype="image",
        subtype="png",
        disposition="inline",
        cid="<logo@inline>",
        filename="lögo.png",
    )
    message = make_message(body="See the logo")
    message.attach_alternative('<img src="cid:logo@inline">', "text/html")
    message.attach(image)
    return message


def with_everything() -> EmailMessage:
    message = with_text_and_binary_attachments()
    message.cc, message.bcc, message.reply_to = ["c@example.com"], ["b@example.com"], ["r@x.org"]
    message.attach_alternative("<p>HTML</p>", "text/html")
    message.attach("forwarded.eml", make_message(EmailMessage), "message/rfc822")
    attach_legacy(message, MIMEImage(b"GIF89a", "gif"))
    return message


CASES = [
    pytest.param(make_message, id="minimal"),
    pytest.param(with_non_ascii_everywhere, id="non-ascii-subject-body-names"),
    pytest.param(with_html_body, id="content-subtype-html"),
    pytest.param(with_all_recipient_kinds, id="to-cc-bcc-reply-to"),
    pytest.param(with_extra_headers, id="extra-headers"),
    pytest.param(with_date_header_as_datetime, id="date-header-as-datetime"),
    pytest.param(with_encoding, id="encoding"),
    pytest.param(with_html_alternative, id="alternatives"),
    pytest.param(with_text_and_binary_attachments, id="str-and-bytes-attachments"),
    pytest.param(with_django_message_attached, id="rfc822-django-message"),
    pytest.param(with_stdlib_message_attached, id="rfc822-stdlib-message"),
    pytest.param(with_legacy_mimebase_attachment, id="mimebase-attachment"),
    pytest.param(with_inline_mimepart_image, id="mimepart-inline-image", marks=needs_django_6),
    pytest.param(with_everything, id="everything"),
]


@pytest.mark.parametrize("build", CASES)
def test_rebuilt_message_renders_the_same_bytes(build: Callable[[], EmailMessage]) -> None:
    message = build()
    assert rendered(round_trip(message)) == rendered(message)


@pytest.mark.parametrize("build", CASES)
def test_payload_is_json_text(build: Callable[[], EmailMessage]) -> None:
    payload = to_payload(build())
    assert json.loads(json.dumps(payload)) == payload
    assert payload["v"] == 1


# --------------------------------------------------------------------------- field by field


def test_plain_fields_are_restored() -> None:
    message = with_non_ascii_everywhere()
    rebuilt = round_trip(message)
    for field in ("subject", "body", "from_email", "to", "cc", "bcc", "reply_to"):
        assert getattr(rebuilt, field) == getattr(message, field), field


def test_bcc_stays_an_envelope_recipient_only() -> None:
    rebuilt = round_trip(with_all_recipient_kinds())
    assert rebuilt.bcc == ["hidden@example.com"]
    assert "hidden@example.com" in rebuilt.recipients()
    assert b"hidden@example.com" not in rebuilt.message().as_bytes()


def test_cc_and_reply_to_are_restored() -> None:
    rebuilt = round_trip(with_all_recipient_kinds())
    assert rebuilt.cc == ["c@example.com"]
    assert rebuilt.reply_to == ["Replies <reply@example.com>"]


def test_extra_headers_are_restored() -> None:
    message = with_extra_headers()
    assert round_trip(message).extra_headers == message.extra_headers


def test_header_values_that_are_not_text_are_stored_as_text() -> None:
    payload = to_payload(make_message(headers={"X-Count": 3}))
    assert payload["headers"]["X-Count"] == "3"


def test_lazy_subject_is_stored_as_text() -> None:
    lazy_subject = lazy(lambda: "Translated subject", str)()
    payload = to_payload(make_message(subject=lazy_subject))
    assert payload["subject"] == "Translated subject"


def test_content_subtype_is_restored() -> None:
    assert round_trip(with_html_body()).content_subtype == "html"


def test_encoding_is_restored() -> None:
    assert round_trip(with_encoding()).encoding == "iso-8859-1"


def test_charset_object_encoding_is_stored_as_its_name() -> None:
    message = make_message()
    message.encoding = Charset("iso-8859-1")
    assert to_payload(message)["encoding"] == "iso-8859-1"


def test_alternatives_are_restored_with_their_content_type() -> None:
    rebuilt = round_trip(with_html_alternative())
    assert rebuilt.alternatives == [
        EmailAlternative("<p>HTML <i>version</i> — ünïcode</p>", "text/html"),
        EmailAlternative(b'{"json": true}', "application/json"),
    ]


def test_attachment_content_keeps_its_type_text_or_bytes() -> None:
    # Text that looks like base64 stays text, and bytes that are valid UTF-8 stay bytes.
    message = make_message()
    message.attach("looks-like-base64.txt", "aGVsbG8=", "text/plain")
    message.attach("utf8.bin", b"plain ascii", "application/octet-stream")
    message.attach(None, "no filename", "text/csv")
    assert round_trip(message).attachments == [
        EmailAttachment("looks-like-base64.txt", "aGVsbG8=", "text/plain"),
        EmailAttachment("utf8.bin", b"plain ascii", "application/octet-stream"),
        EmailAttachment(None, "no filename", "text/csv"),
    ]


def test_binary_content_is_base64_under_an_explicit_key() -> None:
    message = make_message()
    message.attach("data.bin", b"\x00\xff", "application/octet-stream")
    message.attach("data.txt", "text", "text/plain")
    first, second = to_payload(message)["attachments"]
    assert first["content"] == {"b64": base64.b64encode(b"\x00\xff").decode()}
    assert second["content"] == {"text": "text"}


def test_legacy_mimebase_attachment_is_rebuilt_as_a_mimebase() -> None:
    # Django 5.2 passes an attachment through untouched only if it is a MIMEBase.
    rebuilt = round_trip(with_legacy_mimebase_attachment())
    image, text = rebuilt.attachments
    assert isinstance(image, MIMEBase)
    assert image["Content-ID"] == "<logo@example.com>"
    assert image.get_payload(decode=True) == b"GIF89a\x01\x00\x01\x00"
    assert text.get_payload(decode=True).decode() == "legacy text ü"


@needs_django_6
def test_mimepart_inline_image_keeps_its_content_id() -> None:
    rebuilt = round_trip(with_inline_mimepart_image())
    (image,) = rebuilt.attachments
    assert isinstance(image, MIMEPart)
    assert image["Content-ID"] == "<logo@inline>"
    assert image.get_content() == b"\x89PNG\r\n\x1a\n"


def test_attached_message_is_rebuilt_as_a_message() -> None:
    (attachment,) = round_trip(with_django_message_attached()).attachments
    assert attachment.mimetype == "message/rfc822"
    assert isinstance(attachment.content, Message)
    assert attachment.content["Message-ID"] == PINNED["Message-ID"]


def test_message_class_is_restored() -> None:
    assert type(round_trip(make_message(EmailMessage))) is EmailMessage
    assert type(round_trip(make_message(EmailMultiAlternatives))) is EmailMultiAlternatives
    assert type(round_trip(make_message(AnymailMessage))) is AnymailMessage


def test_user_subclass_is_stored_as_its_nearest_allowed_base() -> None:
    class NewsletterMessage(EmailMultiAlternatives):
        pass

    class BrandedAnymailMessage(AnymailMessage):
        pass

    assert to_payload(make_message(NewsletterMessage))["class"] == "EmailMultiAlternatives"
    assert to_payload(make_message(BrandedAnymailMessage))["class"] == "AnymailMessage"


@needs_django_5
def test_legacy_mixed_subtype_set_on_the_instance_is_restored() -> None:
    message = with_inline_image_for_django_5()
    message.mixed_subtype = "related"
    rebuilt = round_trip(message)
    assert rebuilt.mixed_subtype == "related"
    assert rendered(rebuilt) == rendered(message)


@needs_django_5
def test_legacy_subtype_changed_by_a_subclass_is_stored() -> None:
    class RelatedMessage(EmailMultiAlternatives):
        mixed_subtype = "related"

    payload = to_payload(make_message(RelatedMessage))
    assert payload["mixed_subtype"] == "related"
    assert "alternative_subtype" not in payload  # left at its default


def test_legacy_subtypes_left_alone_are_not_stored() -> None:
    payload = to_payload(with_everything())
    assert "mixed_subtype" not in payload
    assert "alternative_subtype" not in payload


def with_inline_image_for_django_5() -> EmailMessage:
    message = make_message(body="See the logo")
    message.attach_alternative('<img src="cid:logo@example.com">', "text/html")
    image = MIMEImage(b"GIF89a", "gif")
    image.add_header("Content-ID", "<logo@example.com>")
    attach_legacy(message, image)
    return message


# --------------------------------------------------------------------------- anymail extras

ANYMAIL_VALUES = {
    "tags": ["welcome", "onboarding"],
    "metadata": {"user_id": "42", "plan": "pro"},
    "merge_data": {"to@example.com": {"name": "Zoë"}},
    "merge_global_data": {"company": "ACME"},
    "merge_metadata": {"to@example.com": {"order": 7}},
    "merge_headers": {"to@example.com": {"List-Unsubscribe": "<mailto:u@example.com>"}},
    "template_id": "welcome-v2",
    "esp_extra": {"ip_pool": "transactional", "nested": [1, 2.5, None, True]},
    "track_clicks": False,
    "track_opens": True,
    "envelope_sender": "bounces@example.com",
    "send_at": datetime.datetime(2030, 5, 1, 9, 30, tzinfo=datetime.timezone.utc),
}


@pytest.mark.parametrize(("name", "value"), ANYMAIL_VALUES.items(), ids=list(ANYMAIL_VALUES))
def test_anymail_attribute_round_trips(name: str, value: object) -> None:
    message = make_message(AnymailMessage, **{name: value})
    assert getattr(round_trip(message), name) == value


def test_anymail_send_at_keeps_date_or_datetime() -> None:
    naive = datetime.datetime(2030, 5, 1, 9, 30)
    assert round_trip(make_message(AnymailMessage, send_at=naive)).send_at == naive
    day = datetime.date(2030, 5, 1)
    rebuilt_day = round_trip(make_message(AnymailMessage, send_at=day)).send_at
    assert (type(rebuilt_day), rebuilt_day) == (datetime.date, day)
    assert round_trip(make_message(AnymailMessage, send_at=1900000000)).send_at == 1900000000


def test_unset_anymail_attributes_are_not_stored() -> None:
    payload = to_payload(make_message(AnymailMessage, tags=["one"]))
    assert payload["anymail"] == {"tags": ["one"]}
    assert "tags" not in vars(round_trip(make_message(EmailMessage)))


@pytest.mark.parametrize("cls", [EmailMessage, EmailMultiAlternatives])
def test_anymail_attributes_on_a_plain_email_message_round_trip(cls: type[EmailMessage]) -> None:
    message = make_message(cls)
    message.tags = ["plain"]
    message.metadata = {"k": "v"}
    rebuilt = round_trip(message)
    assert (rebuilt.tags, rebuilt.metadata) == (["plain"], {"k": "v"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("metadata", {"when": datetime.date(2030, 1, 1)}),
        ("esp_extra", {"callback": print}),
        ("merge_data", {1: {"name": "not a str key"}}),
        ("tags", [float("nan")]),
    ],
    ids=["date-in-metadata", "function-in-esp-extra", "int-key", "nan"],
)
def test_anymail_value_that_is_not_json_is_refused_naming_the_attribute(
    name: str, value: object
) -> None:
    with pytest.raises(SerializationError, match=name):
        to_payload(make_message(AnymailMessage, **{name: value}))


# --------------------------------------------------------------------------- property


def _text(min_size: int = 0, max_size: int = 30) -> st.SearchStrategy[str]:
    # No control or line-separator characters: Django refuses them in headers.
    alphabet = st.characters(exclude_categories=("C", "Zl", "Zp"))
    return st.text(alphabet, min_size=min_size, max_size=max_size)


_words = st.text(st.characters(categories=("L",)), min_size=1, max_size=8)
_local_part = st.from_regex(r"[a-z][a-z0-9.]{0,10}[a-z0-9]", fullmatch=True).filter(
    lambda local: ".." not in local
)
_plain_address = st.builds("{}@example.{}".format, _local_part, st.sampled_from(["com", "org"]))
_address = _plain_address | st.builds(
    "{} <{}>".format, st.lists(_words, min_size=1, max_size=3).map(" ".join), _plain_address
)
_body = st.text(st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from("\n\t"))
_filename = st.builds("{}.{}".format, _words, st.sampled_from(["txt", "bin", "csv"]))
_attachment = st.one_of(
    st.tuples(_filename, _body, st.sampled_from(["text/plain", "text/csv"])),
    st.tuples(_filename, st.binary(max_size=300), st.just("application/octet-stream")),
)
_alternative = st.one_of(
    st.tuples(_body, st.sampled_from(["text/html", "text/plain"])),
    st.tuples(st.binary(max_size=100), st.just("application/json")),
)
_headers = st.dictionaries(
    st.from_regex(r"X-[A-Za-z0-9]{1,12}", fullmatch=True), _text(max_size=60), max_size=4
)


@st.composite
def email_messages(draw: st.DrawFn) -> EmailMessage:
    alternatives = draw(st.lists(_alternative, max_size=3))
    cls = EmailMultiAlternatives if alternatives or draw(st.booleans()) else EmailMessage
    message = cls(
        subject=draw(_text()),
        body=draw(_body),
        from_email=draw(_address),
        to=draw(st.lists(_address, min_size=1, max_size=3)),
        cc=draw(st.lists(_address, max_size=2)),
        bcc=draw(st.lists(_address, max_size=2)),
        reply_to=draw(st.lists(_address, max_size=2)),
        headers={**draw(_headers), **PINNED},
    )
    message.content_subtype = draw(st.sampled_from(["plain", "html"]))
    for content, mimetype in alternatives:
        assert isinstance(message, EmailMultiAlternatives)
        message.attach_alternative(content, mimetype)
    for filename, content, mimetype in draw(st.lists(_attachment, max_size=3)):
        message.attach(filename, content, mimetype)
    return message


@settings(max_examples=75, deadline=None)
@given(message=email_messages())
def test_any_message_renders_the_same_after_a_json_round_trip(message: EmailMessage) -> None:
    assert rendered(round_trip(message)) == rendered(message)


# --------------------------------------------------------------------------- refusing bad rows


def valid_payload() -> dict[str, Any]:
    message = make_message()
    message.attach("data.bin", b"\x00\x01", "application/octet-stream")
    return to_payload(message)


def changed(**changes: Any) -> dict[str, Any]:
    payload = valid_payload()
    for key, value in changes.items():
        if value is ...:
            del payload[key]
        else:
            payload[key] = value
    return payload


def with_bad_base64() -> dict[str, Any]:
    payload = valid_payload()
    payload["attachments"][0]["content"] = {"b64": "not base64!"}
    return payload


def with_unknown_attachment_kind() -> dict[str, Any]:
    payload = valid_payload()
    payload["attachments"][0]["kind"] = "pickle-jar"
    return payload


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(["a", "list"], "not an object", id="a-list"),
        pytest.param("text", "not an object", id="a-string"),
        pytest.param(None, "not an object", id="none"),
        pytest.param(changed(v=2), "format version 2", id="future-version"),
        pytest.param(changed(v="1"), "format version '1'", id="version-as-text"),
        pytest.param(changed(v=True), "format version True", id="version-as-bool"),
        pytest.param(changed(v=...), "format version None", id="no-version"),
        pytest.param(changed(subject=...), "'subject' is missing", id="no-subject"),
        pytest.param(changed(subject=5), "'subject' should be a str, not int", id="int-subject"),
        pytest.param(changed(to="a@example.com"), "'to' should be a list", id="to-as-text"),
        pytest.param(changed(to=[1]), "every entry of 'to'", id="non-str-recipient"),
        pytest.param(changed(headers={"X": 1}), "header name and value", id="int-header"),
        pytest.param(with_bad_base64(), "invalid base64", id="bad-base64"),
        pytest.param(with_unknown_attachment_kind(), "unknown kind 'pickle-jar'", id="bad-kind"),
        pytest.param(changed(**{"class": "os.system"}), "'os.system' is not", id="os-system"),
        pytest.param(
            changed(**{"class": "django.core.mail.EmailMessage"}),
            "is not one mailroom rebuilds",
            id="dotted-path",
        ),
        pytest.param(
            changed(anymail={"send": "overwrite a method"}),
            "unknown anymail attribute 'send'",
            id="unknown-anymail-attribute",
        ),
        pytest.param(
            changed(**{"class": "EmailMessage", "alternatives": [{}]}),
            "cannot carry alternatives",
            id="alternatives-on-plain-message",
        ),
        pytest.param(
            changed(anymail={"send_at": {"datetime": "next tuesday"}}),
            "malformed",
            id="unparseable-send-at",
        ),
    ],
)
def test_bad_payload_is_undecodable_with_a_reason(payload: Any, reason: str) -> None:
    with pytest.raises(UndecodableMessage) as raised:
        from_payload(payload)
    assert reason in str(raised.value)


def test_anymail_class_without_anymail_installed_is_undecodable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload = to_payload(make_message(AnymailMessage))
    monkeypatch.setitem(sys.modules, "anymail.message", None)  # makes the import fail
    with pytest.raises(UndecodableMessage, match="django-anymail is not installed"):
        from_payload(payload)


# --------------------------------------------------------------------------- refusing to store


def test_attachment_content_of_an_unsupported_type_cannot_be_stored() -> None:
    message = make_message()
    message.attachments.append(EmailAttachment("thing.bin", object(), "application/octet-stream"))
    with pytest.raises(SerializationError, match="attachment 0 has content of type object"):
        to_payload(message)


def test_attachment_of_an_unsupported_kind_cannot_be_stored() -> None:
    message = make_message()
    message.attachments.append({"filename": "a dict"})
    with pytest.raises(SerializationError, match="attachment 0 is a dict"):
        to_payload(message)


def test_something_that_is_not_an_email_message_cannot_be_stored() -> None:
    with pytest.raises(SerializationError, match=r"is not a django\.core\.mail\.EmailMessage"):
        to_payload(email.message.EmailMessage(policy=email.policy.default))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- safety


@pytest.mark.parametrize("module", [serialization, anymail_extras, payload_checks])
def test_modules_never_use_pickle_nor_dynamic_imports(module) -> None:
    source = Path(module.__file__).read_text()
    assert "pickle" not in source
    assert "import_module" not in source
    assert "__import__" not in source
