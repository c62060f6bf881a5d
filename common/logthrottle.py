"""At most one log line per key per interval, for errors a peer can repeat at line rate.

A flood of bad requests, oversized answers or rejected stats must not become a flood of log lines (the
metrics count every one); the line that does go out says how many were held back since the previous one.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LogThrottle:
    """Lets one line per key through every ``interval_s``; counts the ones it holds back.

    Keys are the caller's fixed set of reasons or endpoints, so the table stays as small as that set.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str = "", count: int = 1) -> int | None:
        """None when a line for ``key`` went out less than ``interval_s`` ago (``count`` more are held back);
        otherwise how many were held back since that line, and the caller logs."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + count
            return None
        self._last[key] = now
        return self._held.pop(key, 0)
