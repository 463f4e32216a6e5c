"""A connection pool that serves waiting requests in the order they came (first come, first served).

SQLAlchemy's asyncio pool keeps idle connections in an `asyncio.Queue`. When a connection is returned
while others wait, the queue wakes the first waiter but does not give it the connection: any task that
asks before the waiter runs takes it (an idle connection "is taken without awaiting"), and the waiter,
finding the queue empty again, goes to the back of the line. Under a steady stream of requests on a
small pool a waiter can lose that race many times: behind SQLite's single connection, four report
requests at a time left two waiting ~450 ms while the others took ~1 ms each
(docs/decisions/010-fair-connection-pool.md). The same problem, and the same fix, is known from other
drivers' pools (sqlx #453, mysql_async #212, asyncpg #1247).

`FairQueue` hands a returned connection straight to the longest-waiting request; idle connections
exist only while no one waits, so a newcomer can never pass a waiter. `FairAsyncPool` is SQLAlchemy's
`AsyncAdaptedQueuePool` with that queue (`create_async_engine(..., poolclass=FairAsyncPool)`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util.concurrency import await_
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty, Full

_T = TypeVar("_T")


class FairQueue(AsyncAdaptedQueue[_T]):
    """The pool's queue of idle connections, first come first served. Used on one event loop only, as
    SQLAlchemy's own asyncio queue is (the pool calls it from the loop's greenlets)."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._idle: deque[_T] = deque()
        self._waiters: deque[asyncio.Future[_T]] = deque()

    def empty(self) -> bool:
        return not self._idle

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._idle)

    def qsize(self) -> int:
        return len(self._idle)

    def put_nowait(self, item: _T) -> None:
        """Give `item` to the longest waiter, or keep it idle if no one waits."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._idle.append(item)

    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)  # never blocks: the pool holds at most `maxsize` idle connections

    def get_nowait(self) -> _T:
        # An idle connection means no one is waiting (put_nowait hands over to waiters first).
        if not self._idle:
            raise Empty()
        return self._idle.pop() if self.use_lifo else self._idle.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        if self._idle or not block:
            return self.get_nowait()
        return await_(self._wait(seconds=timeout))

    async def _wait(self, *, seconds: float | None) -> _T:
        waiter: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                return await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return waiter.result()  # handed over just as the clock ran out: keep it
            raise Empty() from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())  # cancelled just after the handover: pass it on
            raise
        finally:
            with contextlib.suppress(ValueError):  # put_nowait may have taken it off already
                self._waiters.remove(waiter)


class FairAsyncPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, serving waiters in order (see `FairQueue`)."""

    _queue_class = FairQueue[ConnectionPoolEntry]
