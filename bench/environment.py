"""The machine and versions a run measured on, for the report's header."""

from __future__ import annotations

import datetime
import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import databases

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "Django",
    "django-mailroom",
    "django-mailer",
    "django-post_office",
    "aiosmtpd",
    "psycopg",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return result.stdout.strip()


def describe(with_postgres: bool) -> dict[str, Any]:
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "src"))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": round(_memory_gib(), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": databases.postgres_version() if with_postgres else "not used",
        "packages": {p: _version(p) for p in PACKAGES},
        "commit": _git("rev-parse", "--short", "HEAD") + (" + uncommitted src/" if dirty else ""),
    }


def cpu_times() -> list[int] | None:
    """The machine's CPU time so far by kind, in ticks (the first line of /proc/stat), or
    None where there is no such file."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    return [int(value) for value in fields[1:]] if fields[:1] == ["cpu"] else None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """Of the CPU time that passed between two :func:`cpu_times`, the share the hypervisor
    gave to other machines (steal, the eighth field): time this run's processes were ready to
    run and did not. None where it is not known."""
    if before is None or after is None or len(before) < 8 or len(after) < 8:
        return None
    # user, nice, system, idle, iowait, irq, softirq, steal (guest time is inside user).
    spent = [b - a for a, b in zip(before[:8], after[:8], strict=True)]
    total = sum(spent)
    return spent[7] / total if total > 0 else None
