"""A batch's INSERTs fed page by page: each table's INSERT is opened when the batch's first rows for it are
mapped, gets one Native block per page as the exporter maps it, and ends when the batch does.

Why (docs/export.md#benchmark): ClickHouse squashes the blocks of one INSERT into one part (up to
``min_insert_block_size_rows``, a million rows), so a batch still makes one part per table, and the batch can be
large (fewer parts: less merging, which had cost ClickHouse as much CPU again as the INSERTs) without the
exporter holding its rows: a page's columns are encoded and sent while the next page is mapped, and the memory a
batch takes is a few pages (:data:`FEED_BLOCKS` per table), whatever ``batch_rows``.

Each table has its own connection and one thread (:class:`TableStream`), on which its INSERTs run one after the
other: the next batch's INSERT into a table starts once the one before it ended. Exactly once is unchanged
(:mod:`processd.export.sink`): the cursor moves past a batch only once every INSERT of it ended; an INSERT cut
short (a failure, a kill) leaves nothing or, past a million rows, some parts past the cursor, which a resume
finds and skips as ever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
from collections.abc import Callable
from typing import Any

from processd.export.errors import SinkUnavailable
from processd.export.native import BlockFeed, Columns, NativeClient
from processd.export.schema import Table

#: Blocks (pages) waiting to be sent per table INSERT: the mapping waits when a table's INSERT is that far behind.
FEED_BLOCKS = 4
#: Seconds between checks that the INSERT a full feed waits for is still alive.
_PUT_POLL_S = 0.25


class Feed:
    """One INSERT being fed: :meth:`put` a block, :meth:`end` once, then await :attr:`done`."""

    def __init__(self) -> None:
        self.blocks: queue.Queue[Columns | None] = queue.Queue(FEED_BLOCKS)
        self.done: concurrent.futures.Future[int] = concurrent.futures.Future()
        self.ended = False

    async def put(self, block: Columns) -> None:
        """Queues a block (waits while the feed is full); raises the INSERT's failure once it failed."""
        while True:
            if self.done.done():
                self.done.result()  # raises the failure (an INSERT does not end before its feed does)
                raise SinkUnavailable("an INSERT ended before its batch did")
            try:
                self.blocks.put_nowait(block)
                return
            except queue.Full:
                if await asyncio.to_thread(self._put_within, block, _PUT_POLL_S):
                    return

    def _put_within(self, block: Columns, timeout_s: float) -> bool:
        try:
            self.blocks.put(block, timeout=timeout_s)
        except queue.Full:
            return False
        return True

    def end(self) -> None:
        """No more blocks: the INSERT ends once it sent those queued (never blocks: the end mark may pass the
        bound by one)."""
        if not self.ended:
            self.ended = True
            with self.blocks.mutex:
                self.blocks.queue.append(None)
                self.blocks.not_empty.notify()

    def abort(self) -> None:
        """Ends the INSERT without its end mark: the blocks queued are dropped and the INSERT fails (nothing of
        it is stored: its parts are written at its end)."""
        self.ended = True
        with self.blocks.mutex:
            self.blocks.queue.clear()
            self.blocks.queue.append(BlockFeed.ABORT)
            self.blocks.not_empty.notify()


class TableStream:
    """The INSERTs into one table, one at a time, on the table's own connection and thread."""

    def __init__(self, table: Table, sql: str, connect: Callable[[], NativeClient],
                 run: Callable[[NativeClient, str, Any], int]) -> None:
        self.table = table
        self.sql = sql
        self._connect = connect
        self._run = run
        self._client: NativeClient | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"export-{table.name}")
        self._feeds: list[Feed] = []

    def open(self) -> Feed:
        """A new INSERT, started once the ones opened before it ended."""
        feed = Feed()
        self._feeds = [f for f in self._feeds if not f.done.done()]
        self._feeds.append(feed)
        job = self._thread.submit(self._insert, feed)
        job.add_done_callback(lambda j: _settle(feed.done, j))
        return feed

    def _insert(self, feed: Feed) -> int:
        if self._client is None:
            self._client = self._connect()
        try:
            return self._run(self._client, self.sql, BlockFeed(feed.blocks))
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()

    def close(self) -> None:
        """Aborts the INSERTs not ended, waits for the thread, drops the connection. Idempotent."""
        for feed in self._feeds:
            if not feed.ended:
                feed.abort()
        self._feeds = []
        self._thread.shutdown(wait=True)
        self._drop()


def _settle(fut: concurrent.futures.Future[int], job: concurrent.futures.Future[int]) -> None:
    if job.cancelled():
        fut.set_exception(SinkUnavailable("the INSERT was cancelled"))
    elif job.exception() is not None:
        fut.set_exception(job.exception())
    else:
        fut.set_result(job.result())
