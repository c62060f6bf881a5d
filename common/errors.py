"""The root of mempulse's own exceptions.

Every daemon has its own root under this one (``IngestdError``, ``ProcessdError``, ``GatewaydError``), so a
caller can catch "anything mempulse raised on purpose" without catching programming errors, and ask any of them
whether trying again may help (``retriable``, like aiokafka's errors). Classes that were ``ValueError`` or
``RuntimeError`` subclasses stay so (multiple inheritance): existing ``except ValueError`` keeps working.
"""

from __future__ import annotations


class MempulseError(Exception):
    """An error mempulse raises on purpose; ``retriable`` says whether the same call may succeed later."""

    retriable: bool = False
