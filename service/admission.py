"""Admission of image decodes against one memory budget shared by every request.

A flat PNG of 40 Mpx is 130 KB on the wire and 160 MB once decoded: without a budget, a few
dozen such uploads at once take gigabytes. Each decode states its estimated peak bytes (from
the image header, before any pixel is decoded) and runs only once they fit; a request that
does not fit within `wait_s` gets `Busy` (503 with Retry-After).
"""

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

from service.errors import Busy

T = TypeVar("T")

# A decode over an eighth of the budget leaves that eighth free, so that ordinary photos keep
# being served while large images queue for the rest.
RESERVE_FRACTION = 8
# Returning freed memory to the system costs a walk of the heap: worth it after this much,
# once the decoded images have also gone through the model and out (or new decodes started).
TRIM_AFTER_BYTES = 32 * 1024 * 1024
TRIM_DELAY_S = 2.0


class DecodeBudget:
    """Bytes of image decoding in flight across all requests, at most `capacity`.

    `on_drained` (e.g. glibc's `malloc_trim`) runs in a thread when no decode has started for
    `trim_delay_s` after `TRIM_AFTER_BYTES` of decoding, so a burst of large images does not
    set the process's footprint for the rest of its life. Not under steady load, where the
    budget is empty between most small decodes: a trim costs the model worker ~10 ms and its
    next pass ~40 ms more (the freed pages are faulted in again).
    """

    def __init__(
        self,
        capacity: int,
        wait_s: float,
        retry_after_s: int,
        on_drained: Callable[[], object] | None = None,
        trim_delay_s: float = TRIM_DELAY_S,
    ) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.used = 0
        self._reserve = capacity // RESERVE_FRACTION
        self._on_drained, self._trim_delay_s = on_drained, trim_delay_s
        self._since_drained = 0  # bytes decoded since memory was last returned
        self._started = 0  # decodes so far: says whether any started during the trim delay
        self._freed: asyncio.Future[None] | None = None  # resolved at the next release
        self._draining: asyncio.Future | None = None

    async def run(self, cost: int, work: Callable[[], T]) -> T:
        """`work()` in a thread once `cost` bytes fit; raises Busy when they do not in time.

        The bytes are held until the thread ends, even if the caller is cancelled (a client
        that hangs up cannot free memory that a decode is still using).
        """
        cost = min(cost, self.capacity)  # larger than everything: decoded alone
        await self._acquire(cost)
        future = asyncio.get_running_loop().run_in_executor(None, work)
        future.add_done_callback(lambda _: self._release(cost))
        return await asyncio.shield(future)

    def _fits(self, cost: int) -> bool:
        room = self.capacity - (self._reserve if cost > self._reserve else 0)
        return self.used == 0 or self.used + cost <= room

    async def _acquire(self, cost: int) -> None:
        deadline = time.monotonic() + self.wait_s
        while not self._fits(cost):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Busy(self.retry_after_s, "too many large images are being decoded")
            if self._freed is None:
                self._freed = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._freed), remaining)
        self.used += cost
        self._since_drained += cost
        self._started += 1

    def _release(self, cost: int) -> None:
        self.used -= cost
        if self._freed is not None and not self._freed.done():
            self._freed.set_result(None)
        self._freed = None
        if self.used == 0 and self._since_drained >= TRIM_AFTER_BYTES:
            loop = asyncio.get_running_loop()
            loop.call_later(self._trim_delay_s, self._trim_if_drained, self._started)

    def _trim_if_drained(self, started: int) -> None:
        stale = started != self._started or self._since_drained < TRIM_AFTER_BYTES
        if stale or self._on_drained is None:
            return  # decoding again (a later drain will call back), or trimmed already
        if self._draining is None or self._draining.done():
            self._since_drained = 0
            self._draining = asyncio.get_running_loop().run_in_executor(None, self._on_drained)
