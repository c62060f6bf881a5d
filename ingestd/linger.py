"""How long a partial batch still waits before it goes (the fetch batcher and the outbound stream share this).

At light load per-request and per-batch costs dominate: an HTTP request costs ingestd ~1.5 ms of CPU however few
hashes it holds, and each outbound batch costs a gRPC write in ingestd and a group commit (an fsync) in processd.
Sending whatever is queued the moment the pipe is idle made batches of one or two transactions at 200 tx/s, and
mempulse used twice the CPU per transaction of a plain web3.py loop (issue 20). So a partial batch waits until its
oldest item was announced ``linger`` ago. The age counts from the announcement, not from the enqueue: an item that
already waited upstream (the fetch path's own linger, a slow node) goes at once, so the two waits do not add up.
"""

from __future__ import annotations

#: A partial batch holding this many items goes without the linger: the fixed cost is already spread thin (a
#: processd group commit, ~1 ms of CPU, over 20 transactions), and at peak rates waiting longer only adds latency.
ENOUGH_ITEMS = 20


def batch_delay_s(oldest_seen_ns: int, now_ns: int, linger_ns: int, busy_wait_s: float = 0.0,
                  queued: int = 1) -> float:
    """Seconds a partial batch of ``queued`` items should still wait: until its oldest item (announced at
    ``oldest_seen_ns``, unix ns) is ``linger_ns`` old, unless it holds :data:`ENOUGH_ITEMS`, and at least
    ``busy_wait_s`` (the wait while a request is already in flight). Never more than the longer of the two, even if
    the clock stepped back since the announcement; 0 or less = send now."""
    if not linger_ns or queued >= ENOUGH_ITEMS:
        return busy_wait_s
    left = min(linger_ns, linger_ns - (now_ns - oldest_seen_ns)) / 1e9
    return max(busy_wait_s, left)
