"""Watching a real function without replacing what it does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def spy(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, note: Callable[..., None]
) -> None:
    """Make ``owner.name`` call ``note(*args, **kwargs)`` before each real call (so a call
    that raises is noted too)."""
    real = getattr(owner, name)

    def watched(*args: Any, **kwargs: Any) -> Any:
        note(*args, **kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, watched)
