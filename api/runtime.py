"""Process-wide memory tuning: glibc kept from trimming (set before the first large tensor),
and, for the server, memory handed back once it is idle."""

import asyncio
import gc
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from service.memory import libc, return_freed_memory

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
KEEP_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Stop glibc from handing freed tensor memory back to the kernel after every op.

    By default glibc serves large blocks with mmap and trims the heap on free, so each
    training step or encoder batch faults its activations in again, page by page: on the
    2-core machine this was half the CPU time (a 5x slower training step). Raising both
    thresholds keeps the memory in the process for reuse. The server keeps this speed and
    returns memory itself once a burst of large decodes is over (`service.admission`).
    A no-op off glibc.
    """
    library = libc()
    if library is None:
        return False
    try:
        return bool(
            library.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)
            and library.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)
        )
    except AttributeError:
        return False


def one_malloc_arena() -> bool:
    """Make every thread allocate from glibc's main arena, for the server.

    `malloc_trim` gives back the free top of the main heap only; the top of each thread's own
    arena would go back only through the trim threshold that `keep_freed_memory` raised, so
    the memory of decodes run in worker threads stayed resident after a burst (about 100 MB
    settled over idle in `benchmarks.memory`). Most allocations happen under the GIL anyway,
    so one arena costs little contention. Call before the first worker thread starts.
    """
    library = libc()
    try:
        return library is not None and bool(library.mallopt(M_ARENA_MAX, 1))
    except AttributeError:
        return False


def collect_and_return_memory() -> bool:
    """Collect cyclic garbage, then hand freed memory back. Refused requests leave cycles
    (an exception, its traceback, the frames holding the upload's bytes) that the collector
    would otherwise only meet after many more allocations, which an idle server never makes.
    """
    gc.collect()
    return return_freed_memory()


class TrimWhenIdle:
    """ASGI middleware: return freed memory to the system once no HTTP request has been in
    flight for `delay_s`.

    With `keep_freed_memory` glibc never trims by itself, so a burst (large decodes, hundreds
    of connections) would set the server's footprint for the rest of its life. Trimming only
    when idle keeps the speed of reused memory under load; it runs in a thread, off the loop.
    """

    def __init__(
        self, app: ASGIApp, delay_s: float = 1.0, trim: Callable[[], object] | None = None
    ) -> None:
        self.app, self.delay_s, self.trim = app, delay_s, trim or collect_and_return_memory
        self.in_flight = 0
        self._arrivals = 0  # requests so far: says whether any came during the delay
        self._trimming: asyncio.Future | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        self._arrivals += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                loop = asyncio.get_running_loop()
                loop.call_later(self.delay_s, self._trim_if_idle, self._arrivals)

    def _trim_if_idle(self, arrivals: int) -> None:
        if arrivals != self._arrivals:
            return  # a request came since (and may be in flight): the last to end calls back
        if self._trimming is None or self._trimming.done():
            self._trimming = asyncio.get_running_loop().run_in_executor(None, self.trim)
