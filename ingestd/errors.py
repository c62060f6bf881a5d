"""The root of ingestd's exceptions (under :class:`common.errors.MempulseError`)."""

from __future__ import annotations

from common.errors import MempulseError


class IngestdError(MempulseError):
    """An error ingestd raises on purpose; subclasses set ``retriable`` when trying again may help."""
