"""CPU used by the processes around a measurement: the sink, and the database server.

On a 2-CPU machine the sink, the database server and the app compete for the same CPUs, so
what each costs per message explains a rate as much as the rate itself. Read from ``/proc``
(Linux); elsewhere every figure is None.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float | None:
    """Seconds of CPU (user and system) that ``pid`` has used, or None if it cannot be read."""
    fields = _stat(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / _TICK


def user_cpu(user: str) -> float | None:
    """Seconds of CPU used by every process of ``user``, with the children they have reaped.

    A database server's connection processes end with their client; their CPU is then counted
    in their parent's (the postmaster's) reaped-children total, so nothing is lost in between.
    """
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return None
    total = 0.0
    found = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
        except OSError:
            continue
        fields = _stat(int(entry.name))
        if fields is None:
            continue
        found = True
        total += sum(int(f) for f in fields[11:15]) / _TICK
    return total if found else None


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 onwards), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()
