"""Dynamic micro-batching: concurrent requests share one forward pass on one worker thread.

The event loop only enqueues and awaits; one thread owns the model, so torch never runs two
passes at once and never blocks the loop. A batch starts with the first waiting request and
takes whatever else arrives within `max_wait_s`, up to `max_batch_size`. The queue is bounded:
when it is full, `submit` raises `Busy` at once, so overload turns into quick 503s instead of
requests that time out after waiting. A request cancelled while waiting (its client went
away) leaves the queue immediately and is never computed.
"""

import asyncio
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from PIL import Image

from service.engine import AnswerResult, CaptionResult, Engine
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

    def _enqueue(self, job: Job) -> Future:
        item = _Waiting(job, Future(), time.perf_counter())
        with self._cond:
            if self._closed:
                raise NotReady("the server is shutting down")
            if len(self._queue) >= self.max_queue_size:
                raise Busy(self.retry_after_s)
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
        """Block for the first live request, then gather more until full or out of time."""
        batch: list[_Waiting[Job]] = []
        deadline = None
        with self._cond:
            while len(batch) < self.max_batch_size:
                if self._closed:
                    break  # finish what was taken; the next call returns None
                if not self._queue:
                    if deadline is None:
                        self._cond.wait()
                        continue
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                    continue
                item = self._queue.popleft()
                if not item.future.set_running_or_notify_cancel():
                    continue  # cancelled between its callback and now
                batch.append(item)
                if deadline is None:
                    deadline = time.perf_counter() + self.max_wait_s
            self._update_depth()
        return batch or None

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
                for item in batch:
                    item.future.set_exception(exc)
                continue
            elapsed = time.perf_counter() - started
            for item, result in zip(batch, results, strict=True):
                waited = started - item.enqueued
                item.future.set_result(Completed(result, waited, elapsed, len(batch)))


@dataclass(frozen=True)
class CaptionJob:
    image: Image.Image
    beam_size: int
    max_length: int


@dataclass(frozen=True)
class AnswerJob:
    image: Image.Image
    questions: tuple[str, ...]
    top_k: int


EngineJob = CaptionJob | AnswerJob
EngineResult = CaptionResult | list[AnswerResult]


def run_jobs(
    engine: Engine, jobs: list[EngineJob], metrics: Metrics | None = None
) -> list[EngineResult]:
    """One encoder pass for every image of the batch, then each head on its share of it.

    Captions are decoded together per (beam size, max length), since one beam search runs
    with one setting; all questions go through the VQA head at once with the largest top-k.
    """
    images = [job.image for job in jobs]
    features = _timed(metrics, "encode", len(jobs), engine.encode, images)
    results: list[EngineResult | None] = [None] * len(jobs)

    caption_groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        if isinstance(job, CaptionJob):
            caption_groups[(job.beam_size, job.max_length)].append(i)
    for (beam_size, max_length), rows in caption_groups.items():
        picked, grids = [images[i] for i in rows], _rows(features, rows)
        captions = _timed(
            metrics, "caption", len(rows), engine.caption, picked, beam_size, max_length, grids
        )
        for i, caption in zip(rows, captions, strict=True):
            results[i] = caption

    rows = [i for i, job in enumerate(jobs) if isinstance(job, AnswerJob)]
    if rows:
        asked: list[AnswerJob] = [jobs[i] for i in rows]
        questions = [list(job.questions) for job in asked]
        top_k = max(job.top_k for job in asked)
        picked, grids = [job.image for job in asked], _rows(features, rows)
        answers = _timed(metrics, "vqa", len(rows), engine.answer, picked, questions, top_k, grids)
        for i, job, per_image in zip(rows, asked, answers, strict=True):
            results[i] = [replace(a, top_k=a.top_k[: job.top_k]) for a in per_image]
    return results


def _rows(features: dict, rows: list[int]) -> dict:
    """The encoder grids of some images of the batch: {key: (len(rows), L, D)}."""
    return {key: grid[rows] for key, grid in features.items()}


def _timed(metrics: Metrics | None, task: str, size: int, work: Callable, *args):
    """Run `work(*args)`, recording its duration and batch size under `task`."""
    started = time.perf_counter()
    result = work(*args)
    if metrics is not None:
        metrics.inference_duration.labels(task).observe(time.perf_counter() - started)
        metrics.batch_size.labels(task).observe(size)
    return result
