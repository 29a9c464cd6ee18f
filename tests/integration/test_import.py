"""``mailroom import``: the queues of django-mailer and django-post_office, moved into mailroom.

The source rows are made by each package's own code, in its own real tables.
"""

from __future__ import annotations

import base64
import io
import os
import pickle
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.management import CommandError, call_command
from django.utils import timezone

from mailroom import importing, suppression, unpickling
from mailroom.models import Message, Priority, Status
from mailroom.serialization import from_payload

pytestmark = pytest.mark.django_db

mailer = pytest.importorskip("mailer", reason="django-mailer is not installed")
post_office_mail = pytest.importorskip("post_office.mail", reason="django-post_office missing")

from mailer import models as mailer_models  # noqa: E402
from mailer.backend import DbBackend  # noqa: E402
from post_office import models as po_models  # noqa: E402


@pytest.fixture(autouse=True)
def _queueing(queue_to_smtp, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")  # post_office's attachments
    return queue_to_smtp


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("mailroom", "import", *args, stdout=out)
    return out.getvalue()


def payloads() -> dict[str, EmailMessage]:
    return {row.subject: from_payload(row.content.payload) for row in Message.objects.all()}


# --- django-mailer -------------------------------------------------------------------------


def mailer_queue() -> None:
    """A django-mailer queue as its own API leaves it: plain, HTML, an attachment, deferred."""
    mailer.send_mail("plain", "Body", "app@example.com", ["a@example.com"])
    mailer.send_html_mail(
        "html",
        "Text",
        "<p>HTML</p>",
        "app@example.com",
        ["b@example.com"],
        priority=mailer_models.PRIORITY_HIGH,
    )
    rich = EmailMultiAlternatives(
        "attached", "See file", "app@example.com", ["c@example.com"], cc=["cc@example.com"]
    )
    rich.attach("report.csv", "a,b\n1,2\n", "text/csv")
    rich.attach("logo.bin", b"\x00\x01\x02", "application/octet-stream")
    DbBackend().send_messages([rich])
    mailer.send_mail(
        "low", "Body", "app@example.com", ["d@example.com"], priority=mailer_models.PRIORITY_LOW
    )
    deferred = mailer_models.make_message(
        subject="deferred", body="B", from_email="app@example.com", to=["e@example.com"]
    )
    deferred.priority = mailer_models.PRIORITY_DEFERRED
    deferred.save()


def test_mailer_queue_is_moved_with_its_priorities() -> None:
    mailer_queue()
    out = run("--from", "mailer")
    assert "django-mailer: 5 queued, imported 5 (removed from the old queue), 0 skipped" in out
    assert not mailer_models.Message.objects.exists()
    priorities = dict(Message.objects.values_list("subject", "priority"))
    assert priorities == {
        "plain": Priority.NORMAL,
        "html": Priority.HIGH,
        "attached": Priority.NORMAL,
        "low": Priority.LOW,
        "deferred": Priority.NORMAL,  # as django-mailer's own retry_deferred would put it
    }
    messages = payloads()
    assert messages["html"].alternatives[0][:2] == ("<p>HTML</p>", "text/html")
    attached = messages["attached"]
    assert attached.cc == ["cc@example.com"]
    assert [a[0] for a in attached.attachments] == ["report.csv", "logo.bin"]
    assert attached.attachments[1][1] == b"\x00\x01\x02"
    assert Message.objects.get(subject="attached").recipients == [
        "c@example.com",
        "cc@example.com",
    ]


def test_imported_mailer_messages_are_delivered(smtp_server, run_send) -> None:
    mailer_queue()
    run("--from", "mailer")
    run_send()
    assert smtp_server.count == 5
    assert set(Message.objects.values_list("status", flat=True)) == {Status.SENT}


def test_dry_run_moves_nothing_and_says_what_would_be_imported() -> None:
    mailer_queue()
    out = run("--from", "mailer", "--dry-run")
    assert "would import 5" in out
    assert mailer_models.Message.objects.count() == 5
    assert not Message.objects.exists()


def test_keep_leaves_the_source_rows() -> None:
    mailer_queue()
    out = run("--from", "mailer", "--keep")
    assert "left in place (--keep)" in out
    assert (mailer_models.Message.objects.count(), Message.objects.count()) == (5, 5)


def test_deferred_messages_past_max_retries_are_left_in_place(settings) -> None:
    settings.MAILER_EMAIL_MAX_RETRIES = 3
    mailer.send_mail("fresh", "B", "app@example.com", ["a@example.com"])
    dead = mailer_models.make_message(
        subject="dead", body="B", from_email="app@example.com", to=["b@example.com"]
    )
    dead.priority, dead.retry_count = mailer_models.PRIORITY_DEFERRED, 3
    dead.save()
    out = run("--from", "mailer")
    assert "1 deferred message(s) past MAILER_EMAIL_MAX_RETRIES were left in place" in out
    assert list(Message.objects.values_list("subject", flat=True)) == ["fresh"]
    assert list(mailer_models.Message.objects.values_list("pk", flat=True)) == [dead.pk]


class _Exploit:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def test_a_pickle_that_would_run_code_is_refused_and_left_in_place(tmp_path) -> None:
    target = tmp_path / "pwned"
    evil = mailer_models.Message.objects.create(
        message_data=base64.encodebytes(pickle.dumps(_Exploit(target))).decode("ascii")
    )
    mailer.send_mail("good", "B", "app@example.com", ["a@example.com"])
    out = run("--from", "mailer")
    assert not target.exists(), "unpickling ran code"
    assert f"row {evil.pk} not imported: UnpicklingError: posix.mkdir is not allowed" in out
    assert list(mailer_models.Message.objects.values_list("pk", flat=True)) == [evil.pk]
    assert list(Message.objects.values_list("subject", flat=True)) == ["good"]


def test_a_message_mailroom_would_refuse_is_skipped_and_the_rest_imported() -> None:
    mailer.send_mail("good", "B", "app@example.com", ["a@example.com"])
    mailer.send_mail("bad", "B", "app@example.com", ["x@example.com\nBcc: y@example.com"])
    mailer.send_mail("good too", "B", "app@example.com", ["b@example.com"])
    out = run("--from", "mailer")
    assert "imported 2" in out
    assert "invalid recipient address" in out
    assert sorted(Message.objects.values_list("subject", flat=True)) == ["good", "good too"]
    assert mailer_models.Message.objects.count() == 1


def test_suppression_applies_to_imported_messages() -> None:
    suppression.suppress(["a@example.com"], reason="bounced")
    mailer.send_mail("to a", "B", "app@example.com", ["a@example.com"])
    run("--from", "mailer")
    row = Message.objects.get()
    assert (row.status, row.reason) == (
        Status.FAILED,
        "all recipients are suppressed: a@example.com (bounced)",
    )


@pytest.mark.parametrize(
    "data",
    ["", "not base64!", base64.encodebytes(pickle.dumps({"a": 1})).decode()],
    ids=["empty", "not-base64", "not-a-message"],
)
def test_undecodable_rows_are_refused(data: str) -> None:
    with pytest.raises((ValueError, pickle.UnpicklingError)):
        unpickling.unpickle_mailer_message(data)


# --- django-post_office --------------------------------------------------------------------


def po_send(**kwargs):
    defaults = {"recipients": ["a@example.com"], "sender": "app@example.com", "priority": "medium"}
    return post_office_mail.send(**{**defaults, **kwargs})


def test_post_office_queue_is_moved_as_post_office_would_send_it() -> None:
    later = timezone.now() + timedelta(hours=2)
    po_send(
        subject="rich",
        message="Text",
        html_message="<p>HTML</p>",
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        headers={"X-Campaign": "spring"},
        priority="high",
        attachments={"notes.txt": ContentFile(b"hello")},
    )
    po_send(subject="later", message="B", priority="low", scheduled_time=later)
    requeued = po_send(subject="requeued", message="B")
    po_models.Email.objects.filter(pk=requeued.pk).update(status=po_models.STATUS.requeued)
    sent = po_send(subject="already sent", message="B")
    po_models.Email.objects.filter(pk=sent.pk).update(status=po_models.STATUS.sent)

    out = run("--from", "post_office")
    assert "django-post_office: 3 queued, imported 3" in out
    assert list(po_models.Email.objects.values_list("subject", flat=True)) == ["already sent"]

    rows = {row.subject: row for row in Message.objects.all()}
    assert set(rows) == {"rich", "later", "requeued"}
    assert rows["rich"].priority == Priority.HIGH
    assert rows["later"].priority == Priority.LOW
    assert abs((rows["later"].due_at - later).total_seconds()) < 1
    rich = from_payload(rows["rich"].content.payload)
    assert rich.alternatives[0][:2] == ("<p>HTML</p>", "text/html")
    assert rich.extra_headers["X-Campaign"] == "spring"
    # Django decodes a text/* attachment that is valid UTF-8 back to str.
    assert tuple(rich.attachments[0]) == ("notes.txt", "hello", "text/plain")
    assert rows["rich"].recipients == ["a@example.com", "cc@example.com", "bcc@example.com"]


def test_post_office_templates_are_rendered_on_import() -> None:
    template = po_models.EmailTemplate.objects.create(
        name="welcome", subject="Hello {{ name }}", content="Hi {{ name }}!"
    )
    po_send(template=template, context={"name": "Ada"})
    run("--from", "post_office")
    row = Message.objects.get()
    assert row.subject == "Hello Ada"
    assert from_payload(row.content.payload).body == "Hi Ada!"


def test_expired_post_office_messages_are_left_in_place() -> None:
    gone = po_send(subject="expired", message="B")
    po_models.Email.objects.filter(pk=gone.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    expiring = timezone.now() + timedelta(days=1)
    po_send(subject="live", message="B", expires_at=expiring)
    out = run("--from", "post_office")
    assert "1 expired message(s) were left in place" in out
    assert list(po_models.Email.objects.values_list("pk", flat=True)) == [gone.pk]
    assert Message.objects.get().expires_at == expiring


def test_post_office_backend_aliases_map_to_mailroom_backends(
    mailroom_settings, smtp_server
) -> None:
    from tests.conftest import SMTP_BACKEND, smtp_options

    conf = {"BACKEND": SMTP_BACKEND, "OPTIONS": smtp_options(smtp_server)}
    mailroom_settings(BACKENDS={"default": conf, "bulk": conf})
    for alias in ("bulk", "elsewhere"):
        email = po_send(subject=alias, message="B")
        po_models.Email.objects.filter(pk=email.pk).update(backend_alias=alias)
    out = run("--from", "post_office")
    assert dict(Message.objects.values_list("subject", "backend")) == {
        "bulk": "bulk",
        "elsewhere": "default",
    }
    assert "elsewhere are not mailroom backends" in out


def test_imported_post_office_messages_are_delivered(smtp_server, run_send) -> None:
    po_send(subject="one", message="B", html_message="<b>B</b>")
    po_send(subject="two", message="B", attachments={"a.txt": ContentFile(b"x")})
    run("--from", "post_office")
    run_send()
    assert sorted(m.subject for m in smtp_server.messages) == ["one", "two"]


# --- The command ---------------------------------------------------------------------------


def test_without_from_every_installed_source_is_imported() -> None:
    mailer.send_mail("from mailer", "B", "app@example.com", ["a@example.com"])
    po_send(subject="from post_office", message="B")
    out = run()
    assert "django-mailer: 1 queued, imported 1" in out
    assert "django-post_office: 1 queued, imported 1" in out
    assert Message.objects.count() == 2


def test_an_app_not_installed_is_an_error(monkeypatch) -> None:
    monkeypatch.setattr(importing, "installed_sources", lambda: ["post_office"])
    with pytest.raises(CommandError, match="'mailer' is not in INSTALLED_APPS"):
        run("--from", "mailer")


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("posix", "system"),
        ("builtins", "eval"),
        ("email.message", "utils.socket.socket"),  # a class reached through attributes
        ("email.utils", "formataddr"),  # a function of an allowed package
        ("email.message", "Message.__class__"),
        ("email.message", "re"),  # a module an allowed one imports: not a class
        ("email.headerregistry", "MappingProxyType"),  # a class it imports from elsewhere
        ("_codecs", "decode"),  # beside an allowed helper
        ("copyreg", "__newobj__"),
    ],
)
def test_the_unpickler_refuses_anything_but_message_parts(module: str, name: str) -> None:
    unpickler = unpickling._EmailUnpickler(io.BytesIO(b""))
    with pytest.raises(pickle.UnpicklingError, match="is not allowed"):
        unpickler.find_class(module, name)
