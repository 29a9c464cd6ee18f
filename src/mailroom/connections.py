"""Opening the real email backend behind a delivery alias.

An alias is a key of ``MAILROOM["BACKENDS"]`` (``BACKEND`` + ``OPTIONS``, passed as keyword
arguments, Django-style), or ``{"MAILER": name}`` / a bare ``MAILERS`` alias on Django 6.1.
"""

from __future__ import annotations

from typing import Any

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.utils.module_loading import import_string

from . import compat
from .conf import BackendConfig, get_settings
from .exceptions import BackendNotConfigured, BackendRecursion


def backend_config(alias: str) -> BackendConfig:
    settings = get_settings()
    config = settings.backends.get(alias)
    if config is not None:
        return config
    if compat.mailers_configured():
        from django.core.mail import mailers  # type: ignore[attr-defined]

        if alias in mailers:
            return BackendConfig(alias=alias, mailer=alias)
    known = ", ".join(sorted(settings.backends)) or "none"
    raise BackendNotConfigured(f"unknown delivery backend alias {alias!r} (configured: {known})")


def backend_class(alias: str) -> type[BaseEmailBackend] | None:
    """The class behind ``alias`` without constructing it, where it can be known cheaply."""
    config = backend_config(alias)
    if config.mailer is not None:
        from django.conf import settings

        mailers: dict[str, Any] = getattr(settings, "MAILERS", {})
        path = mailers.get(config.mailer, {}).get(
            "BACKEND", "django.core.mail.backends.smtp.EmailBackend"
        )
    else:
        path = config.backend
    try:
        cls = import_string(path)
    except ImportError:
        return None
    return cls if isinstance(cls, type) else None


def open_backend(alias: str) -> BaseEmailBackend:
    """A new backend instance for ``alias`` (not yet connected).

    Raises BackendNotConfigured (an ImproperlyConfigured) for any settings mistake, so the
    engine pauses that backend instead of failing messages.
    """
    config = backend_config(alias)
    try:
        if config.mailer is not None:
            from django.core.mail import mailers  # type: ignore[attr-defined]

            backend: BaseEmailBackend = mailers[config.mailer]
        else:
            cls = import_string(config.backend)
            backend = cls(**_constructor_options(cls, config))
    except BackendNotConfigured:
        raise
    except (ImportError, TypeError, ValueError, KeyError) as exc:
        raise BackendNotConfigured(
            f"delivery backend {alias!r} cannot be created: {type(exc).__name__}: {exc}"
        ) from exc
    if _is_mailroom(backend):
        raise BackendRecursion(
            f"delivery backend {alias!r} is mailroom's own queueing backend: messages would "
            "be queued again instead of sent"
        )
    _force_smtp_timeout(backend)
    return backend


def _constructor_options(cls: type, config: BackendConfig) -> dict[str, Any]:
    options = dict(config.options)
    # Django 6.1: a backend given its settings explicitly is built the way MAILERS builds it
    # (with an alias), so it reads no deprecated EMAIL_* setting and warns about nothing.
    # With no OPTIONS at all it stays in compatibility mode and uses EMAIL_*.
    if compat.HAS_MAILERS and options and issubclass(cls, SMTPBackend):
        options.setdefault("alias", f"mailroom:{config.alias}")
    return options


def _force_smtp_timeout(backend: BaseEmailBackend) -> None:
    # Django's SMTP backend defaults to no timeout at all: a server that stops answering
    # would hold a worker forever. Give it mailroom's SMTP_TIMEOUT unless one was set.
    if isinstance(backend, SMTPBackend) and backend.timeout is None:
        backend.timeout = get_settings().smtp_timeout  # type: ignore[assignment]


def _is_mailroom(backend: BaseEmailBackend) -> bool:
    from .backend import EmailBackend

    return isinstance(backend, EmailBackend)


def uses_smtp_fast_path(backend: BaseEmailBackend) -> bool:
    """True when mailroom may drive ``backend.connection`` itself.

    Only for Django's own SMTP backend or a subclass that leaves ``_send`` alone: a subclass
    that overrides it (to sign with DKIM, say) must be called through ``send_messages``.
    """
    return isinstance(backend, SMTPBackend) and _overrides_send(type(backend)) is False


def is_smtp_alias(alias: str) -> bool:
    cls = backend_class(alias)
    return cls is not None and issubclass(cls, SMTPBackend) and not _overrides_send(cls)


def _overrides_send(cls: type) -> bool:
    # _send is private to Django's SMTP backend (the stubs do not know it), hence getattr.
    return getattr(cls, "_send", None) is not getattr(SMTPBackend, "_send", None)
