"""The differences between the Django versions mailroom supports, in one place.

Django 6.0 changed how a message becomes bytes (``message(policy=...)``) and how the SMTP
backend prepares envelope addresses (``prep_address``); Django 6.1 added ``MAILERS``. Everything
else in mailroom calls these helpers instead of testing ``django.VERSION`` itself.
"""

from __future__ import annotations

import email.policy
import re
from typing import Any

import django
from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends import smtp

from .rendering import render_simple

DJANGO_6 = django.VERSION >= (6, 0)
HAS_MAILERS = django.VERSION >= (6, 1)

#: Django's own message classes. An instance of exactly one of these (not of a subclass) has
#: no copy hook and no class attribute of django-anymail's names, which lets enqueue take
#: shortcuts with it.
DJANGO_MESSAGE_CLASSES = (EmailMessage, EmailMultiAlternatives)


def mailers_configured() -> bool:
    """True on Django 6.1+ when the project uses the ``MAILERS`` setting."""
    return HAS_MAILERS and bool(getattr(settings, "MAILERS", None))


def envelope_address(address: str, encoding: str | None = None) -> str:
    """The SMTP envelope form of ``address``, exactly as Django's SMTP backend computes it.

    Raises ValueError for an address that cannot be sent (CR/LF injection, several mailboxes,
    parser defects), so that enqueue can refuse it before anything is stored.
    """
    if PLAIN_ADDR_SPEC.fullmatch(address):
        # What both Django versions return for a plain ASCII addr-spec is the address itself;
        # parsing it (the slow part of enqueueing) would only say so again.
        return address
    if DJANGO_6:
        # prep_address() does not use the instance; an unconfigured one avoids reading
        # EMAIL_* settings, which raise once MAILERS is defined.
        prep_address = smtp.EmailBackend.prep_address  # type: ignore[attr-defined]
        return str(prep_address(_PREP_SELF, address))
    from django.core.mail.message import sanitize_address

    return str(sanitize_address(address, encoding or settings.DEFAULT_CHARSET))


_PREP_SELF: Any = object()

#: A plain ASCII addr-spec: a dot-atom local part and a domain of letters, digits, hyphens and
#: dots. Nothing here can need quoting, encoding or IDNA, nor carry CR/LF. Use ``fullmatch``:
#: with ``match`` and a ``$`` anchor, a trailing newline would pass.
PLAIN_ADDR_SPEC = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def render_mime(message: EmailMessage) -> bytes:
    """The bytes Django's SMTP backend would put after DATA for ``message``."""
    if DJANGO_6:
        return bytes(message.message(policy=email.policy.SMTP).as_bytes())  # type: ignore[call-arg]
    # Most messages are plain ASCII text, which can be written without the email package:
    # the same bytes in a fraction of the time (see mailroom.rendering).
    simple = render_simple(message)
    if simple is not None:
        return simple
    return bytes(message.message().as_bytes(linesep="\r\n"))
