"""An SMTP outage in the middle of a run charges no message, and everything goes out after."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage

import mailroom
from mailroom.models import Attempt, BackendState, Message, Status
from mailroom.operations import resume_backends

pytestmark = pytest.mark.django_db


def test_server_lost_mid_run_then_down_then_back(queue_to_smtp, run_send) -> None:
    server = queue_to_smtp
    mailroom.enqueue_many(
        EmailMessage(f"S{i}", "B", "app@example.com", [f"user{i}@example.com"]) for i in range(300)
    )
    server.script.drop_connection_after(100)  # the server goes away mid-batch...
    run_send()
    server.stop()  # ...and stays down for the next run
    resume_backends()
    run_send()
    assert Message.objects.filter(status=Status.SENT).count() == 100
    assert not Message.objects.filter(attempts__gt=0).exclude(status=Status.SENT).exists(), (
        "an outage must not charge any message's retry budget"
    )
    assert BackendState.objects.get(alias="default").verdict == "backend_down"

    server.start()
    resume_backends()
    run_send()
    assert Message.objects.filter(status=Status.SENT).count() == 300
    assert server.count == 300
    assert not server.duplicate_message_ids()
    assert set(Message.objects.values_list("attempts", flat=True)) == {1}
    assert Attempt.objects.filter(charged=True).count() == 300
    assert Attempt.objects.filter(charged=False).count() == 2  # one per outage, not per message
