"""Django admin for mailroom: the queue, read-mostly.

The message list and page (:mod:`.messages`), with the operator's actions (:mod:`.actions`) and a
safe preview of what is stored (:mod:`.content`, :mod:`.responses`); the delivery backends and
their pauses (:mod:`.backends`). Only staff holding mailroom's model permissions see anything:
``view`` to look, ``change`` to act. Nothing stored can be edited, added or deleted here.
"""

from __future__ import annotations

from .backends import BackendStateAdmin
from .messages import MessageAdmin

__all__ = ["BackendStateAdmin", "MessageAdmin"]
