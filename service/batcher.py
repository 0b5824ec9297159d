"""Dynamic micro-batching: concurrent requests share one forward pass on one worker thread.

The event loop only enqueues and awaits; one thread owns the model, so torch never runs two
passes at once and never blocks the loop. A batch takes every request waiting when the worker
is free, up to `max_batch_size`, and starts at once: a request that finds the model idle runs
alone, and requests that arrive during a pass form the next batch together. Only after a pass
that k > 1 requests shared does the next batch wait, up to `max_wait_s`, for those k besides
the requests waiting then: answers that went out together bring their clients back together
(never waiting, 8 clients split into small batches and lost a tenth of the throughput). A lone
client never waits for company (a fixed wait added 5 ms to each of its requests). The queue is
bounded: when it is full, `submit` raises `Busy` at once, so overload turns into quick refusals
instead of requests that time out after waiting. A request cancelled while waiting (its client
went away) leaves the queue immediately and is never computed.
"""

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from service.errors import Busy, NotReady
from service.metrics import Metrics

log = logging.getLogger(__name__)

Job = TypeVar("Job")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Completed(Generic[Result]):
    """A request's result and where its time went."""

    result: Result
    queue_seconds: float  # waiting for the worker
    batch_seconds: float  # the forward pass it shared
    batch_size: int


@dataclass(eq=False)
class _Waiting(Generic[Job]):
    job: Job
    future: Future
    enqueued: float


class MicroBatcher(Generic[Job, Result]):
    """A bounded queue in front of `process(jobs) -> results`, run on one worker thread."""

    def __init__(
        self,
        process: Callable[[list[Job]], Sequence[Result]],
        max_batch_size: int = 8,
        max_wait_s: float = 0.005,
        max_queue_size: int = 32,
        retry_after_s: int = 1,
        metrics: Metrics | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or max_wait_s < 0:
            raise ValueError("batch size and queue size must be >= 1 and the wait >= 0")
        self._process = process
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue_size = max_queue_size
        self.retry_after_s = retry_after_s
        self._metrics = metrics
        self._queue: deque[_Waiting[Job]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._wanted = 1  # how many the next batch waits for (see `_expect_company`)
        self._worker = threading.Thread(target=self._run, name="glimpse-model", daemon=True)

    @property
    def depth(self) -> int:
        """Requests waiting for the worker (cancelled ones are not counted)."""
        return len(self._queue)

    def start(self) -> None:
        self._worker.start()

    def close(self, timeout: float | None = None) -> None:
        """Finish the batch in progress, fail the waiting requests, stop the worker."""
        with self._cond:
            self._closed = True
            waiting = list(self._queue)
            self._queue.clear()
            self._update_depth()
            self._cond.notify_all()
        for item in waiting:
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(NotReady("the server is shutting down"))
        if self._worker.is_alive():
            self._worker.join(timeout)

    async def submit(self, job: Job) -> Completed[Result]:
        """Wait for `job`'s result; raises Busy when the queue is full."""
        return await asyncio.wrap_future(self._enqueue(job))

    def check_room(self) -> None:
        """Raise what `submit` would raise now for want of room (Busy; NotReady once closed),
        so that a caller can refuse a request before doing any work for it. Without the lock: a
        late answer only moves the refusal to `submit`."""
        if self._closed:
            raise NotReady("the server is shutting down")
        if len(self._queue) >= self.max_queue_size:
            raise Busy(self.retry_after_s)

    def _enqueue(self, job: Job) -> Future:
        item = _Waiting(job, Future(), time.perf_counter())
        with self._cond:
            self.check_room()
            self._queue.append(item)
            self._update_depth()
            self._cond.notify()
        item.future.add_done_callback(lambda _: self._forget(item))
        return item.future

    def _forget(self, item: _Waiting[Job]) -> None:
        """Free the slot of a request cancelled while waiting (a no-op once it was taken)."""
        if not item.future.cancelled():
            return
        with self._cond:
            if item in self._queue:
                self._queue.remove(item)
                self._update_depth()

    def _update_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_size.set(len(self._queue))

    def _next_batch(self) -> list[_Waiting[Job]] | None:
        """Every live request waiting, up to the batch size, once there is one; up to
        `max_wait_s` more while fewer than `_expect_company` counted. None once closed."""
        batch: list[_Waiting[Job]] = []
        deadline = None
        with self._cond:
            wanted = self._wanted
            while not self._closed:  # closed: finish what was taken; the next call returns None
                while self._queue and len(batch) < self.max_batch_size:
                    item = self._queue.popleft()
                    if item.future.set_running_or_notify_cancel():  # else cancelled just now
                        batch.append(item)
                self._update_depth()
                if len(batch) >= wanted:
                    break
                if batch and deadline is None:
                    deadline = time.perf_counter() + self.max_wait_s
                remaining = None if deadline is None else deadline - time.perf_counter()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
        return batch or None

    def _expect_company(self, answered: int) -> None:
        """Before a pass's answers go out: the next batch waits for those waiting now and, after
        a shared pass, its `answered` clients, who tend to come back. Counted before they can
        come back, so a client already back is not counted twice (and waited for in vain)."""
        with self._cond:
            coming = answered if answered > 1 else 0
            self._wanted = max(1, min(coming + len(self._queue), self.max_batch_size))

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            started = time.perf_counter()
            if self._metrics is not None:
                for item in batch:
                    self._metrics.queue_duration.observe(started - item.enqueued)
            try:
                results = self._process([item.job for item in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(batch)} jobs gave {len(results)} results")
            except Exception as exc:  # a bug in the model path: fail this batch, keep serving
                log.exception("batch of %d failed", len(batch))
                self._expect_company(len(batch))
                for item in batch:
                    item.future.set_exception(exc)
                continue
            elapsed = time.perf_counter() - started
            self._expect_company(len(batch))
            for item, result in zip(batch, results, strict=True):
                waited = started - item.enqueued
                item.future.set_result(Completed(result, waited, elapsed, len(batch)))
