"""The suppression lookup made for every claimed batch (``suppression.suppressed``).

On PostgreSQL it is one ``address = ANY(%s)`` query with the addresses as one array parameter;
elsewhere an ``IN`` list, split into chunks. Either way: one answer per address as given,
whatever its case, display name or duplicates, and no query at all for nothing to look up.
"""

from __future__ import annotations

import pytest
from django.db import connection

from mailroom import suppression
from mailroom.models import Suppression

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _listed() -> None:
    Suppression.objects.bulk_create(
        [
            Suppression(address="a@example.com", reason="bounced"),
            Suppression(address="x@xn--exmple-cua.com", reason="by hand"),
            Suppression(address="o'brien@example.com", reason="quote"),
        ]
    )


def test_every_form_of_a_listed_address_is_found_once_looked_up(
    django_assert_num_queries,
) -> None:
    given = [
        "a@example.com",
        "A@Example.COM",
        "Some One <a@example.com>",
        "a@example.com",  # twice
        "x@Exämple.com",
        "O'Brien@example.com",
        "b@example.com",
        "not an address",
    ]
    with django_assert_num_queries(1):
        found = suppression.suppressed(given)
    assert found == {
        "a@example.com": "bounced",
        "A@Example.COM": "bounced",
        "Some One <a@example.com>": "bounced",
        "x@Exämple.com": "by hand",
        "O'Brien@example.com": "quote",
    }


@pytest.mark.parametrize("given", [[], ["not an address", ""]])
def test_nothing_to_look_up_costs_no_query(given: list[str], django_assert_num_queries) -> None:
    with django_assert_num_queries(0):
        assert suppression.suppressed(given) == {}


def test_a_generator_is_read_once() -> None:
    assert suppression.suppressed(a for a in ["A@example.com", "c@example.com"]) == {
        "A@example.com": "bounced"
    }


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the array lookup is PostgreSQL's")
def test_on_postgresql_any_number_of_addresses_is_one_query_with_one_parameter(
    django_assert_num_queries,
) -> None:
    given = [f"r{i}@example.com" for i in range(25_000)] + ["A@example.com"]
    with django_assert_num_queries(1) as queries:
        found = suppression.suppressed(given)
    assert found == {"A@example.com": "bounced"}
    [sql] = [q["sql"] for q in queries.captured_queries]
    assert sql.startswith('SELECT "address", "reason" FROM "mailroom_suppression" WHERE')
    assert '"address" = ANY(' in sql
