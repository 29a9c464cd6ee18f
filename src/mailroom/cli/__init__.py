"""The subcommands of ``manage.py mailroom``, one module each.

Each module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(command, **options)``; :data:`SUBCOMMANDS` lists them in the order ``--help`` shows.
The management command itself only parses arguments and dispatches here.
"""

from __future__ import annotations

SUBCOMMANDS = (
    "send",
    "worker",
    "status",
    "retry",
    "resume",
    "suppress",
    "unsuppress",
    "purge",
    "import",
)
#: Subcommands whose module cannot take their name (``import`` is a Python keyword).
MODULES = {"import": "import_messages"}
