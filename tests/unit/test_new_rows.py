"""``RowMaker.make`` gives the instance ``Message(**values)`` gives, without its cost."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models.signals import post_init
from django.utils import timezone

from mailroom.models import Message, Priority
from mailroom.new_rows import RowMaker


def fields(row: Message) -> dict[str, object]:
    return {f.attname: getattr(row, f.attname) for f in Message._meta.concrete_fields}


def shared() -> dict[str, object]:
    now = timezone.now()
    return {
        "priority": Priority.HIGH,
        "backend": "esp",
        "created_at": now,
        "due_at": now + timedelta(minutes=5),
        "expires_at": None,
    }


def own(i: int) -> dict[str, object]:
    return {
        "message_id": f"<{i}@example.com>",
        "subject": f"S{i}",
        "from_email": "app@example.com",
        "recipients": [f"u{i}@example.com"],
    }


def test_a_made_row_is_the_row_the_model_makes() -> None:
    values = shared()
    maker = RowMaker(**values)
    for i in range(3):
        made, built = maker.make(**own(i)), Message(**values, **own(i))
        assert fields(made) == fields(built)
        assert made.pk is None
        assert (made._state.adding, made._state.db) == (True, None)


def test_rows_do_not_share_a_default_list_or_dict() -> None:
    maker = RowMaker(**shared())
    first, second = maker.make(**own(1)), maker.make(**own(2))
    assert first.refused_recipients == {}
    assert first.refused_recipients is not second.refused_recipients
    first.refused_recipients["a@example.com"] = "550"
    assert second.refused_recipients == {}


def test_a_post_init_listener_sees_every_row() -> None:
    seen: list[Message] = []

    def listener(sender: type[Message], instance: Message, **kwargs: object) -> None:
        seen.append(instance)

    post_init.connect(listener, sender=Message)
    try:
        maker = RowMaker(**shared())
        rows = [maker.make(**own(i)) for i in range(3)]
    finally:
        post_init.disconnect(listener, sender=Message)
    assert all(any(r is s for s in seen) for r in rows)


def test_a_default_worked_out_by_a_callable_is_worked_out_for_each_call() -> None:
    # created_at's default is timezone.now: two makers made apart must not share one.
    first = RowMaker(priority=Priority.NORMAL).make(**own(1))
    later = timezone.now()
    second = RowMaker(priority=Priority.NORMAL).make(**own(2))
    assert first.created_at < later <= second.created_at
    assert fields(second).keys() == fields(Message(**own(2))).keys()


def test_an_unknown_shared_value_is_refused_as_the_model_refuses_it() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'nonsense'"):
        RowMaker(nonsense=1)
