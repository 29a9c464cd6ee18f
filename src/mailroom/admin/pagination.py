"""Paging a table of millions of messages without counting it.

Django's admin counts the rows of every list it shows. On a large table that ``COUNT(*)``
costs more than the page itself, so this paginator never counts without bound: the whole table
is sized from the database's own statistics, and a filtered list is read only up to
:attr:`EstimatedCountPaginator.count_limit` rows ("at least 10,000").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

from django.core.paginator import Page, Paginator
from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.sql.where import WhereNode
from django.utils.functional import cached_property

if TYPE_CHECKING:
    _Paginator = Paginator[Any]
else:
    _Paginator = Paginator


class EstimatedCountPaginator(_Paginator):
    """A paginator whose count is exact for small lists and an estimate or a floor otherwise.

    ``count_kind`` says which (``"exact"``, ``"estimated"`` or ``"at_least"``), so that the
    message list can tell the operator.
    """

    #: An unfiltered table larger than this (by the statistics) is not counted.
    estimate_above = 10_000
    #: A filtered list is read up to this many rows, and no further.
    count_limit = 10_000

    count_kind: Literal["exact", "estimated", "at_least"] = "exact"
    #: Whether counting keeps the ids it reads, so that the page is then fetched by id. Worth
    #: it for a search, which no index serves: counting scans the table, and fetching the page
    #: by the search would scan it again. An indexed filter is counted unordered (cheaper) and
    #: its page fetched by the filter, as usual.
    remember_rows = False
    #: The ids of the list's first ``count_limit + 1`` rows, in order, once counted.
    found: list[Any] | None = None

    @property
    def queryset(self) -> QuerySet[Model]:
        return cast("QuerySet[Model]", self.object_list)

    @cached_property
    def count(self) -> int:
        if not self.queryset.query.where:
            estimate = estimated_rows(self.queryset.model, self.queryset.db)
            if estimate is not None and estimate > self.estimate_above:
                self.count_kind = "estimated"
                return estimate
        # The database stops after count_limit + 1 rows.
        ids = self.queryset.values_list("pk", flat=True)
        if self.remember_rows:
            self.found = list(ids[: self.count_limit + 1])
            counted = len(self.found)
        else:
            counted = ids.order_by()[: self.count_limit + 1].count()
        if counted > self.count_limit:
            self.count_kind = "at_least"
            return self.count_limit
        return counted

    def rows(self, bottom: int = 0, top: int | None = None) -> QuerySet[Model]:
        """Rows ``bottom`` to ``top`` (default: the count) of the list, by id if counting
        already found them; never an unbounded query."""
        if self.found is not None:
            return self._by_id(self.found[bottom:top])
        return self.queryset[bottom : self.count if top is None else top]

    def _by_id(self, ids: list[Any]) -> QuerySet[Model]:
        """The list's rows with these ids, by id alone: they were read moments ago by counting,
        and the list's filter again would cost its search again (on PostgreSQL the search's
        subquery runs once per statement, whatever few rows the ids select). The queryset
        keeps its ordering and its deferred columns; one that joins another table keeps its
        filter, whose joins may be what it needs."""
        rows = self.queryset.all()
        if len(rows.query.alias_map) == 1:
            rows.query.where = WhereNode()
        return rows.filter(pk__in=ids)

    def page(self, number: int | str) -> Page[Any]:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        return Page(self.rows(bottom, top), number, self)


def estimated_rows(model: type[Model], using: str) -> int | None:
    """The number of rows in ``model``'s table by the database's statistics, if it keeps any.

    PostgreSQL: ``pg_class.reltuples`` (-1 until the table is first analysed); MySQL and
    MariaDB: ``information_schema.tables.table_rows``. None elsewhere, or when unknown.
    """
    connection = connections[using]
    table = model._meta.db_table
    if connection.vendor == "postgresql":
        sql = "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)"
        params = [connection.ops.quote_name(table)]
    elif connection.vendor == "mysql":
        sql = (
            "SELECT table_rows FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name = %s"
        )
        params = [table]
    else:
        return None
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])
