"""TEST-ONLY crash switch used by the reliability suite (never set these variables in production).

``MEMPULSE_TEST_CRASH_POINT=before_put|after_put|after_commit|after_ack`` together with
``MEMPULSE_TEST_CRASH_AFTER_BATCHES=N`` makes processd call ``os._exit(137)`` (no flush, no cleanup, like a
SIGKILL) at that point of the ingest path once N ingest batches have reached it in total.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

log = logging.getLogger(__name__)

POINTS = ("before_put", "after_put", "after_commit", "after_ack")


class CrashSwitch:
    """Counts batches passing each point and exits the process when the configured one reaches its count."""

    def __init__(self, point: str = "", after_batches: int = 0) -> None:
        self.point = point
        self.after_batches = after_batches
        self._seen = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CrashSwitch:
        source = os.environ if env is None else env
        point = source.get("MEMPULSE_TEST_CRASH_POINT", "")
        if point and point not in POINTS:
            raise ValueError(f"MEMPULSE_TEST_CRASH_POINT must be one of {', '.join(POINTS)}, got {point!r}")
        after = int(source.get("MEMPULSE_TEST_CRASH_AFTER_BATCHES", "1") or "1")
        if point:
            log.warning("TEST-ONLY crash switch armed: exit at %s after %d batches", point, after)
        return cls(point, after)

    @property
    def armed(self) -> bool:
        return bool(self.point)

    def hit(self, point: str, batches: int) -> None:
        """Records ``batches`` batches at ``point``; exits with 137 once the threshold is reached there."""
        if point != self.point:
            return
        self._seen += batches
        if self._seen >= self.after_batches:
            sys.stderr.write(f"processd: TEST crash point {point} reached after {self._seen} batches\n")
            sys.stderr.flush()
            os._exit(137)
