"""A rate limit per delivery backend that holds across every worker on every host.

Each backend has one ``send_slots_from`` time in the database. A worker that wants to send
``k`` messages reserves the next ``k`` slots with one atomic UPDATE (``slots_from = max(
slots_from, now - burst) + k / rate``), then sends message ``j`` of its reservation no earlier
than its slot. Because the reservation is a single statement on the shared row, two workers
can never hold the same slot, whatever database and however many hosts. A reservation a
worker does not use (it stopped, the backend paused) is simply lost: the limit errs on the
slow side, never the fast one.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Value
from django.db.models.functions import Greatest

from .models import BackendState

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$", re.I)
_UNIT = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


@dataclass(frozen=True)
class Rate:
    per_second: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"20/s"``, ``"600/m"``, ``"10000/h"``; ValueError for anything else."""
        match = _RATE.match(str(text))
        if not match or float(match.group(1)) <= 0:
            raise ValueError(f"invalid rate {text!r}: write it like '20/s', '600/m' or '1000/h'")
        return cls(float(match.group(1)) / _UNIT[match.group(2).lower()])

    @property
    def interval(self) -> float:
        return 1.0 / self.per_second

    @property
    def burst(self) -> float:
        # Up to one second's worth of slots may be taken at once after an idle spell, so a
        # worker does not pay one round trip per message at low rates.
        return 1.0


def reserve(alias: str, rate: Rate, count: int, now: datetime) -> list[datetime]:
    """Reserve ``count`` send slots for ``alias``; return the time of each, in order."""
    BackendState.objects.get_or_create(alias=alias)
    span = timedelta(seconds=count * rate.interval)
    earliest = now - timedelta(seconds=rate.burst)
    with transaction.atomic():
        BackendState.objects.filter(alias=alias).update(
            send_slots_from=ExpressionWrapper(
                Greatest(F("send_slots_from"), Value(earliest)) + Value(span),
                output_field=DateTimeField(),
            )
        )
        end = BackendState.objects.values_list("send_slots_from", flat=True).get(alias=alias)
    start = end - span
    step = timedelta(seconds=rate.interval)
    return [start + step * j for j in range(count)]


class Throttle:
    """The send slots one batch holds for a rate-limited backend."""

    def __init__(self, alias: str, rate: Rate, clock: Callable[[], datetime]) -> None:
        self.alias = alias
        self.rate = rate
        self.clock = clock
        self._slots: list[datetime] = []

    def wait_turn(
        self,
        remaining: int,
        *,
        stop: threading.Event | None,
        keep_alive: Callable[[], None],
    ) -> bool:
        """Sleep until the next slot is due; False if asked to stop meanwhile.

        About one second's worth of slots is reserved at a time: few round trips, and little
        is wasted if the worker stops with slots in hand. ``keep_alive`` runs while waiting
        (it renews the batch's lease).
        """
        if not self._slots:
            count = max(1, min(remaining, int(self.rate.per_second)))
            self._slots = reserve(self.alias, self.rate, count, self.clock())
        slot = self._slots.pop(0)
        while True:
            delay = (slot - self.clock()).total_seconds()
            if delay <= 0:
                return True
            keep_alive()
            if stop is not None:
                if stop.wait(min(delay, 1.0)):
                    return False
            else:
                time.sleep(min(delay, 1.0))
