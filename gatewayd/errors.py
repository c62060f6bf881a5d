"""The root of gatewayd's exceptions (under :class:`common.errors.MempulseError`)."""

from __future__ import annotations

from common.errors import MempulseError


class GatewaydError(MempulseError):
    """An error gatewayd raises on purpose; subclasses set ``retriable`` when trying again may help."""
