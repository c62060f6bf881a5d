"""Helpers shared by the SSE fan-out tests against the real gatewayd (shared, fallback and sharded streams)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx


def stream_path(chain: str, kinds: str, raw: bool = False) -> str:
    """``/events/stream`` with the given ``chain_id`` / ``kinds`` ('' = none) and, if ``raw``, ``include=raw``."""
    params = [f"chain_id={chain}"] if chain else []
    params += [f"kinds={kinds}"] if kinds else []
    params += ["include=raw"] if raw else []
    return "/events/stream" + ("?" + "&".join(params) if params else "")


def metric(url: str, name: str) -> float:
    """Sum of the samples of gatewayd's ``/metrics`` whose line starts with ``name`` (a name with its labels)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Polls ``check`` off the event loop (it may block on HTTP while this loop serves an in-process processd)
    until it holds; fails naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        await asyncio.sleep(0.1)
