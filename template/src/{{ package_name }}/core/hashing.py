"""Password hashing off the event loop: worker threads behind a bounded queue, sign-ins first
(one piece: the places, the threads and the estimate of the wait are one protocol, read together).

`queue` is the process's one queue; core/passwords.py runs every hash on it, and core/limits.py
reads it to refuse a sign-in unread while it is full. Touch this file to change how hashes
wait; what a hash is belongs to core/passwords.py.
"""

import asyncio
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

from . import metrics
from .config import get_settings
from .errors import BusyError


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Hashing threads run this much nicer than the rest of the process: when the CPUs are busy,
# the event loop (every other request) comes first, and a flood of sign-ins only waits longer.
HASHING_NICENESS = 10


def _yield_cpu() -> None:
    # On Linux a thread has a niceness of its own; elsewhere this would slow the whole process.
    if sys.platform == "linux":
        current = os.getpriority(os.PRIO_PROCESS, 0)
        with suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, min(19, current + HASHING_NICENESS))


# What the running request holds a place in the hashing queue for, if it holds one (see
# place()): "sign_in" or "other".
_holding_place: ContextVar[str | None] = ContextVar("holding_place", default=None)


class HashingQueue:
    """Password hashing on `workers` threads, with at most `queue_size` hashes waiting.

    Each hash holds a core for a while by design, and tens of MB, so at most one runs per usable
    CPU; a burst of sign-ins would otherwise starve the event loop and swell memory. What
    waits is bounded too, in number and in the time it would wait (from what hashes cost
    lately): beyond either a request is refused at once (503) instead of waiting longer than
    any client would. While a thread is free, a sign-in's hash is always taken.

    Sign-ins come first: a free thread takes a waiting sign-in's hash before any other, and a
    quarter of the places (at least one per thread) are kept for sign-ins. A flood of
    sign-ups or password changes therefore never makes a sign-in wait behind it, nor refuses
    one.
    """

    def __init__(self, workers: int, queue_size: int, max_wait_seconds: float = 5.0) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self.others_capacity = max(1, self.capacity - max(workers, queue_size // 4))
        self.max_wait_seconds = max_wait_seconds
        self.pending = 0  # hashes running or waiting, and places held for one
        self.others_pending = 0  # those of them not for a sign-in
        self._seconds_per_hash = 0.1
        self._free_threads = workers
        self._waiting: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="password-hash", initializer=_yield_cpu
        )

    @contextmanager
    def place(self, *, sign_in: bool = False) -> Iterator[None]:
        """Hold a place in the queue, or raise BusyError (503) at once when it is full.

        Every hash takes a place for itself unless its request holds one already: a sign-in
        takes its place before its first query, so that a full queue refuses it before it
        has cost the database anything.
        """
        if _holding_place.get() is not None:
            yield
            return
        if self.is_full(sign_in=sign_in):
            raise self.busy_error()
        self.pending += 1
        self.others_pending += not sign_in
        metrics.set_password_hash_queue_depth(self.pending)
        holding = _holding_place.set("sign_in" if sign_in else "other")
        try:
            yield
        finally:
            _holding_place.reset(holding)
            self.pending -= 1
            self.others_pending -= not sign_in
            metrics.set_password_hash_queue_depth(self.pending)

    def is_full(self, *, sign_in: bool = True) -> bool:
        """Whether a hash asked for now would be refused (see place())."""
        if not sign_in:
            return (
                self.pending >= self.capacity
                or self.others_pending >= self.others_capacity
                or self._seconds_until_done(self.pending) > self.max_wait_seconds
            )
        # Behind the sign-ins already waiting and, at worst, a thread's worth of other hashes
        # running: the others waiting go after it.
        ahead = self.pending - self.others_pending + min(self.others_pending, self.workers)
        return self.pending >= self.workers and (
            self.pending >= self.capacity or self._seconds_until_done(ahead) > self.max_wait_seconds
        )

    def busy_error(self) -> BusyError:
        return BusyError(
            "Too many password checks at once; try again shortly",
            retry_after=self._seconds_to_drain(),
        )

    async def run(self, call: Callable[[], Any]) -> Any:
        with self.place():
            sign_in = _holding_place.get() == "sign_in"
            await self._take_thread(sign_in)
            try:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._executor, self._timed, call)
            finally:
                self._give_thread()

    async def _take_thread(self, sign_in: bool) -> None:
        ahead = self._waiting[True] if sign_in else (*self._waiting[True], *self._waiting[False])
        if self._free_threads and not ahead:
            self._free_threads -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting[sign_in].append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_thread()  # handed over just as the request went away
            else:
                self._waiting[sign_in].remove(turn)
            raise

    def _give_thread(self) -> None:
        # To the next waiting sign-in, else the next other hash, else back to the pool.
        for line in (self._waiting[True], self._waiting[False]):
            while line:
                turn = line.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._free_threads += 1

    def _timed(self, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return call()
        finally:
            # A running mean of what one hash costs here, for Retry-After.
            seconds = time.perf_counter() - started
            self._seconds_per_hash += (seconds - self._seconds_per_hash) / 16

    def _seconds_until_done(self, ahead: int) -> float:
        # For one more hash behind `ahead` others, with each thread taking the next in line.
        return math.ceil((ahead + 1) / self.workers) * self._seconds_per_hash

    def _seconds_to_drain(self) -> int:
        return max(1, math.ceil(self.pending * self._seconds_per_hash / self.workers))


queue = HashingQueue(
    _usable_cpus(),
    get_settings().PASSWORD_HASH_QUEUE_SIZE,
    get_settings().PASSWORD_HASH_MAX_WAIT_SECONDS,
)
