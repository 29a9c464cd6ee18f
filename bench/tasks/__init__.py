"""What runs inside a measurement process: one registered function per task.

A task takes JSON-able keyword arguments and returns a JSON-able dict; ``bench.child`` calls it
after ``django.setup()``. Timings are taken around the measured call only, with
``time.perf_counter``; the peak resident memory of the process is reported with each result.
"""

from __future__ import annotations

import importlib
import resource
from collections.abc import Callable
from typing import Any

Task = Callable[..., dict[str, Any]]
TASKS: dict[str, Task] = {}

MODULES = ("common", "send", "enqueue", "pickup", "queries")


def task(fn: Task) -> Task:
    """Register ``fn`` under ``<module>.<name>``, e.g. ``send.raw_smtplib``."""
    TASKS[f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}"] = fn
    return fn


def load_all() -> None:
    for name in MODULES:
        importlib.import_module(f"bench.tasks.{name}")


def installed_app() -> str:
    """Which of the apps measured this process's settings install (each installs one)."""
    from django.apps import apps

    for label in ("mailroom", "mailer", "post_office"):
        if apps.is_installed(label):
            return label
    raise LookupError("no queueing app is installed")


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU (user and system) used so far by this process and its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
