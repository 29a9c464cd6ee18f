"""Reading django-mailer's queued messages, which it stores pickled: the one place mailroom
touches pickle.

Unpickling runs whatever callables the data names, so a row that someone could write would run
their code. :func:`unpickle_mailer_message` therefore builds only what a Django email message is
made of (Django's message classes, the standard ``email`` package's MIME classes, plain
containers) and refuses every other class or function. It is used by ``mailroom import`` only,
on rows created by django-mailer's own code. mailroom stores JSON (:mod:`mailroom.serialization`)
and never pickles anything itself.
"""

from __future__ import annotations

import base64
import binascii
import io
import pickle
from typing import Any

from django.core.mail import EmailMessage


class _EmailUnpickler(pickle.Unpickler):
    """Builds Django email messages and the plain types inside them; refuses anything else."""

    _ALLOWED = frozenset(
        {
            *(
                ("django.core.mail.message", name)
                for name in (
                    "EmailMessage",
                    "EmailMultiAlternatives",
                    "EmailAlternative",
                    "EmailAttachment",
                    "SafeMIMEText",
                    "SafeMIMEMultipart",
                    "SafeMIMEMessage",
                )
            ),
            ("django.core.mail", "EmailMessage"),
            ("django.core.mail", "EmailMultiAlternatives"),
            ("django.utils.safestring", "SafeString"),
            ("django.utils.safestring", "SafeText"),
            ("anymail.message", "AnymailMessage"),
            ("anymail.message", "AnymailStatus"),
            ("anymail.message", "AnymailRecipientStatus"),
            ("anymail.utils", "UNSET"),
            ("collections", "OrderedDict"),
            ("builtins", "set"),
            ("builtins", "frozenset"),
            ("builtins", "bytearray"),
            ("builtins", "object"),
            # Helpers pickle itself and the email package use to rebuild the types above.
            ("copyreg", "_reconstructor"),
            ("_codecs", "encode"),
            ("email.headerregistry", "_reconstruct_header"),
        }
    )
    # Modules of the standard email package whose *classes* (not functions) may be built:
    # attachments made of MIME parts, their policies, charsets and parsed headers.
    _EMAIL_MODULES = (
        "email.message",
        "email.charset",
        "email._policybase",
        "email.policy",
        "email.headerregistry",
        "email._header_value_parser",
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        email_module = module in self._EMAIL_MODULES or module.startswith("email.mime.")
        # No dotted names: "utils.socket.socket" would reach other modules through attributes.
        if email_module and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type) and found.__module__.startswith("email."):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in an imported message")


def unpickle_mailer_message(data: str) -> EmailMessage:
    """The EmailMessage in django-mailer's ``message_data`` (base64 of a pickle)."""
    if not data:
        raise ValueError("the row holds no message")
    try:
        raw = base64.decodebytes(data.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"message_data is not base64: {exc}") from exc
    message = _EmailUnpickler(io.BytesIO(raw)).load()
    if not isinstance(message, EmailMessage):
        raise ValueError(f"message_data holds a {type(message).__name__}, not an EmailMessage")
    return message
