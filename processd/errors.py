"""The root of processd's exceptions (under :class:`common.errors.MempulseError`)."""

from __future__ import annotations

from common.errors import MempulseError


class ProcessdError(MempulseError):
    """An error processd raises on purpose; subclasses set ``retriable`` when trying again may help."""
