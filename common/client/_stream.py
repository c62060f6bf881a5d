"""What the client's two resumable streams share (``Subscription`` over SubscribeEvents, ``ManySubscription`` over
SubscribeMany): one background task holds processd's stream and reconnects with :class:`Backoff` when it breaks,
feeding a bounded queue that the caller's ``async for`` drains; the lifecycle is ``start()`` (idempotent),
``aclose()`` (idempotent), ``async with``. A subclass says how one stream runs (:meth:`ResumableStream._stream_once`)
and where the next one resumes (:meth:`ResumableStream._resume_point`)."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

import grpc

from common.client.errors import ClientClosedError, ClientError, InvalidArgumentError, UnavailableError, from_rpc_error

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Put in the queue to wake a consumer waiting on an empty queue when the stream ends.
_WAKE = object()
#: The subscription was closed by its owner: iteration ends.
_CLOSED = object()


@dataclass(frozen=True, slots=True)
class Backoff:
    """How a subscription reconnects: after the n-th consecutive failure it waits
    ``min(max_s, initial_s * multiplier**(n-1))``, spread by +-``jitter`` (a fraction) so clients of one
    processd do not come back in step, and gives up after ``max_attempts`` consecutive failures (None: never).
    A stream that processd admitted resets the count.
    """

    initial_s: float = 0.1
    max_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s) or self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise InvalidArgumentError(
                f"invalid backoff {self}: need 0 < initial_s <= max_s, multiplier >= 1, 0 <= jitter < 1")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise InvalidArgumentError(f"invalid backoff {self}: max_attempts must be >= 0 or None")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect ``attempt`` (1 = the first after a failure)."""
        base = min(self.max_s, self.initial_s * self.multiplier ** max(attempt - 1, 0))
        return min(self.max_s, base * (1.0 + rng.uniform(-self.jitter, self.jitter)))


class ResumableStream(Generic[T]):
    """The shared part of a resumable subscription (module doc): an async iterator of ``T``."""

    #: The RPC (in errors) and what the stream is called in logs; set by each subclass.
    method = ""
    label = ""

    def __init__(self, *, queue_events: int, backoff: Backoff, idle_timeout_s: float, on_close: Any) -> None:
        self._backoff = backoff
        self._idle_timeout_s = idle_timeout_s
        self._on_close = on_close
        self._queue: asyncio.Queue[Any] = asyncio.Queue(queue_events)
        self._wakes = 0  # _WAKE markers in the queue
        self._final: BaseException | object | None = None
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()
        self._last_seq = 0
        #: Set when processd first admits the stream, or when the subscription ends before that.
        self._settled = asyncio.Event()
        #: The head processd reported when the first stream was admitted (None before).
        self.head_seq: int | None = None
        #: Streams opened after the first one (processd restarts, resets, cut-offs).
        self.reconnects = 0

    @property
    def last_seq(self) -> int:
        """The seq of the last event this iterator returned (0 before the first): resume a later subscription
        with ``from_seq=last_seq + 1``."""
        return self._last_seq

    @property
    def pending(self) -> int:
        """Events queued for the consumer and not yet taken (how far behind the stream it is)."""
        return self._queue.qsize() - self._wakes

    async def start(self) -> Self:
        """Starts the background stream (idempotent)."""
        if self._task is None and self._final is None:
            self._task = asyncio.create_task(self._run(), name=f"mempulse-client-{self.method}")
        return self

    async def wait_admitted(self) -> int:
        """Starts the stream if needed, waits until processd has admitted it and returns the head it reported
        (the highest committed seq at admission): events committed after this returns are sure to be delivered.
        Raises the subscription's error if it ended first."""
        await self.start()
        await self._settled.wait()
        if self.head_seq is None:
            if isinstance(self._final, BaseException):
                raise self._final
            raise ClientClosedError("the subscription was closed before processd admitted it")
        return self.head_seq

    async def aclose(self) -> None:
        """Ends the stream; iteration stops after this. Safe to call twice."""
        if self._final is None:
            self._finish(_CLOSED)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                # Re-raise only if the caller itself is being cancelled, not because of the task we cancelled.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        if self._on_close is not None:
            self._on_close(self)
            self._on_close = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self._task is None and self._final is None:
            await self.start()
        while True:
            if self._final is _CLOSED:  # closed by its owner: what is still queued is not wanted any more
                raise StopAsyncIteration
            if self._queue.empty() and self._final is not None:
                if isinstance(self._final, BaseException):
                    raise self._final
                raise StopAsyncIteration
            item = await self._queue.get()
            if item is _WAKE:
                self._wakes -= 1
                continue
            self._last_seq = self._seq_of(item)
            return item

    # ---- what a subclass says -------------------------------------------------------------------------------

    def _seq_of(self, item: T) -> int:
        """The seq of a queued item."""
        raise NotImplementedError

    async def _stream_once(self, admitted: list[bool]) -> None:
        """One call of the RPC, until processd ends it (returns) or it fails (raises ``grpc.RpcError`` or
        TimeoutError); sets ``admitted[0]`` once processd admitted it."""
        raise NotImplementedError

    def _resume_point(self) -> str:
        """Where the next stream resumes, for the reconnect's log line."""
        raise NotImplementedError

    # ---- the background task --------------------------------------------------------------------------------

    def _finish(self, final: BaseException | object) -> None:
        if self._final is None:
            self._final = final
        self._settled.set()
        # Wake a consumer waiting on an empty queue; a full one is drained first and then sees _final.
        try:
            self._queue.put_nowait(_WAKE)
            self._wakes += 1
        except asyncio.QueueFull:
            pass

    async def _run(self) -> None:
        attempt = 0
        try:
            while True:
                admitted = [False]
                try:
                    await self._stream_once(admitted)
                    cause = "processd ended the stream"
                except grpc.RpcError as err:
                    mapped = from_rpc_error(self.method, err)
                    if not mapped.retriable:
                        raise mapped from None
                    cause = f"{mapped.code}: {(err.details() or '')[:200]}"
                except TimeoutError:
                    cause = f"no message for {self._idle_timeout_s:g} s (processd sends a heartbeat every 5 s)"
                attempt = 1 if admitted[0] else attempt + 1
                if self._backoff.max_attempts is not None and attempt > self._backoff.max_attempts:
                    raise UnavailableError(
                        f"{self.method}: gave up after {attempt - 1} reconnect attempts ({cause})",
                        method=self.method, code="UNAVAILABLE")
                delay = self._backoff.delay(attempt, self._rng)
                log.warning("%s lost (%s); reconnecting in %.2f s %s", self.label, cause, delay,
                            self._resume_point())
                await asyncio.sleep(delay)
                self.reconnects += 1
        except ClientError as err:
            self._finish(err)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug must still end the caller's iteration, not hang it
            log.exception("%s failed", self.label)
            self._finish(ClientError(f"{self.method}: the subscription failed: {err!r}", method=self.method))
