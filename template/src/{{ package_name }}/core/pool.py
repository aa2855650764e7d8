"""A connection pool that serves waiting requests first come, first served.

SQLAlchemy's asyncio pool queues connections in an asyncio.Queue, which lets a request that
has only just arrived take a connection that was returned for a request already waiting; the
waiter then goes to the back of the line. Under sustained load (more requests in flight than
connections) a few unlucky requests wait until the pool timeout while others overtake them.
Here a returned connection goes straight to the longest waiter.
"""

import asyncio
from collections import deque
from contextlib import suppress

from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import await_only
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty, Full


class FairQueue(AsyncAdaptedQueue[ConnectionPoolEntry]):
    """Idle connections, and the requests waiting for one, each in arrival order.

    Both are never non-empty at once: a connection put back while someone waits is handed
    over at once.
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._idle: deque[ConnectionPoolEntry] = deque()
        self._waiters: deque[asyncio.Future[ConnectionPoolEntry]] = deque()

    def empty(self) -> bool:
        return not self._idle

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._idle)

    def qsize(self) -> int:
        return len(self._idle)

    def put_nowait(self, entry: ConnectionPoolEntry) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(entry)
                return
        if self.full():
            raise Full()
        self._idle.append(entry)

    def put(
        self, entry: ConnectionPoolEntry, block: bool = True, timeout: float | None = None
    ) -> None:
        # The pool only ever puts without blocking: a full queue means "close this one".
        self.put_nowait(entry)

    def get_nowait(self) -> ConnectionPoolEntry:
        if not self._idle:
            raise Empty()
        return self._idle.pop() if self.use_lifo else self._idle.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> ConnectionPoolEntry:
        if self._idle or not block:
            return self.get_nowait()
        return await_only(self.wait(patience=timeout))

    async def wait(self, patience: float | None) -> ConnectionPoolEntry:
        """Wait in line for a connection; Empty after `patience` seconds."""
        waiter: asyncio.Future[ConnectionPoolEntry] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(patience):
                return await waiter
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                # Handed over just as this wait ended: pass the connection on, never drop it.
                self.put_nowait(waiter.result())
            else:
                waiter.cancel()
                with suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(error, TimeoutError):
                raise Empty() from error
            raise


class FairAsyncPool(AsyncAdaptedQueuePool):
    """AsyncAdaptedQueuePool, with waiting requests served in arrival order."""

    _queue_class = FairQueue
