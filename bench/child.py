"""Both ends of a measurement in a fresh process.

The parent calls :func:`run_child`; it starts ``python -m bench.child TASK`` with the app's
settings module, the database and the sink's port in the environment and the task's keyword
arguments as JSON on stdin. The child sets Django up, runs the task (a function registered in
``bench.tasks``) and prints its result as one JSON line, last on stdout. Nothing is shared
between two measurements but the database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: The settings module of each app measured (raw smtplib renders with mailroom's: no DB use).
SETTINGS = {
    "mailroom": "bench.settings.mailroom",
    "mailer": "bench.settings.mailer",
    "post_office": "bench.settings.post_office",
}


class ChildFailed(RuntimeError):
    """A measurement process exited with an error; its stderr is the message."""


def run_child(
    task: str,
    *,
    app: str,
    db: str,
    port: int = 0,
    tag: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 1800,
    **params: Any,
) -> dict[str, Any]:
    """Run ``task`` in a fresh process for ``app`` on ``db``; return what it printed."""
    child_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": SETTINGS[app],
        "BENCH_DB": db,
        "BENCH_DB_TAG": tag,
        "BENCH_SMTP_PORT": str(port),
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench.child", task],
        input=json.dumps(params),
        env=child_env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise ChildFailed(f"{task} ({app}, {db}) failed:\n{proc.stderr.strip()}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise ChildFailed(f"{task} ({app}, {db}) printed nothing:\n{proc.stderr.strip()}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    import django

    django.setup()
    from bench.tasks import TASKS, load_all

    load_all()
    name = sys.argv[1]
    params = json.loads(sys.stdin.read() or "{}")
    result = TASKS[name](**params)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
