import asyncio
import threading
from collections.abc import Callable

import pytest

from service.batcher import MicroBatcher
from service.errors import Busy, NotReady
from service.metrics import Metrics


class Doubler:
    """A real process function: doubles numbers, records its batches, can be held."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def __call__(self, jobs: list[int]) -> list[int]:
        self.started.set()
        self.release.wait(timeout=10)
        self.batches.append(list(jobs))
        if any(job < 0 for job in jobs):
            raise ValueError("negative job")
        return [2 * job for job in jobs]


def run(test: Callable, process: Doubler, **limits) -> None:
    """Run `test(batcher)` on the event loop, with a started batcher closed afterwards."""
    batcher = MicroBatcher(process, **{"max_wait_s": 0.0, **limits})
    batcher.start()
    try:
        asyncio.run(test(batcher))
    finally:
        process.release.set()
        batcher.close(timeout=10)


async def hold_worker(batcher: MicroBatcher, process: Doubler) -> asyncio.Task:
    """Occupy the worker with one job until `process.release` is set."""
    process.release.clear()
    first = asyncio.ensure_future(batcher.submit(100))
    await asyncio.to_thread(process.started.wait, 10)
    return first


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met")


def test_waiting_requests_form_batches_up_to_the_limit() -> None:
    process = Doubler()

    async def test(batcher: MicroBatcher) -> None:
        first = await hold_worker(batcher, process)
        rest = [asyncio.ensure_future(batcher.submit(n)) for n in range(6)]
        await until(lambda: batcher.depth == 6)
        process.release.set()
        done = await asyncio.gather(first, *rest)
        assert [d.result for d in done] == [200, 0, 2, 4, 6, 8, 10]
        assert [d.batch_size for d in done] == [1, 4, 4, 4, 4, 2, 2]
        assert all(d.queue_seconds >= 0 and d.batch_seconds >= 0 for d in done)

    run(test, process, max_batch_size=4, max_queue_size=8)
    assert process.batches == [[100], [0, 1, 2, 3], [4, 5]]


def test_a_lone_client_never_waits_for_company() -> None:
    """With a wait of a minute: a batcher that waited for company would not answer in time."""
    process = Doubler()

    async def test(batcher: MicroBatcher) -> None:
        for n in (5, 6):
            done = await asyncio.wait_for(batcher.submit(n), timeout=10)
            assert (done.result, done.batch_size) == (2 * n, 1)

    run(test, process, max_batch_size=8, max_wait_s=60.0)
    assert process.batches == [[5], [6]]


def test_requests_that_arrive_during_a_pass_form_the_next_batch_at_once() -> None:
    process = Doubler()

    async def test(batcher: MicroBatcher) -> None:
        first = await hold_worker(batcher, process)
        company = [asyncio.ensure_future(batcher.submit(n)) for n in (1, 2, 3)]
        await until(lambda: batcher.depth == 3)
        process.release.set()
        done = await asyncio.wait_for(asyncio.gather(first, *company), timeout=10)
        assert [d.batch_size for d in done] == [1, 3, 3, 3]

    run(test, process, max_batch_size=8, max_wait_s=60.0)  # more than the pass before it had
    assert process.batches == [[100], [1, 2, 3]]


def test_after_a_shared_pass_the_next_waits_for_as_many() -> None:
    """Clients answered together come back together: a batch after one of two waits for two."""
    process = Doubler()

    async def test(batcher: MicroBatcher) -> None:
        first = await hold_worker(batcher, process)
        pair = [asyncio.ensure_future(batcher.submit(n)) for n in (1, 2)]
        await until(lambda: batcher.depth == 2)
        process.release.set()
        await asyncio.gather(first, *pair)
        back = asyncio.ensure_future(batcher.submit(3))
        await asyncio.sleep(0.2)
        assert not back.done()  # waiting (up to a minute) for the second of the pair
        done = await asyncio.wait_for(asyncio.gather(back, batcher.submit(4)), timeout=10)
        assert [d.batch_size for d in done] == [2, 2]

    run(test, process, max_batch_size=8, max_wait_s=60.0)
    assert process.batches == [[100], [1, 2], [3, 4]]


def test_a_client_back_before_the_worker_looks_again_is_not_counted_twice() -> None:
    """The client answered last comes back while the worker is still handing out answers: the
    next batch still waits for two, not for three that will never come."""
    process = Doubler()
    back_in_queue = threading.Event()

    async def test(batcher: MicroBatcher) -> None:
        first = await hold_worker(batcher, process)
        pair = [asyncio.ensure_future(batcher.submit(n)) for n in (1, 2)]
        await until(lambda: batcher.depth == 2)
        # Runs on the worker thread as it answers the pair: hold it there until 3 is queued.
        batcher._queue[-1].future.add_done_callback(lambda _: back_in_queue.wait(10))
        process.release.set()
        await asyncio.gather(first, *pair)
        back = asyncio.ensure_future(batcher.submit(3))
        await until(lambda: batcher.depth == 1)
        back_in_queue.set()
        await asyncio.sleep(0.2)
        assert not back.done()  # waiting for the second of the pair
        done = await asyncio.wait_for(asyncio.gather(back, batcher.submit(4)), timeout=10)
        assert [d.batch_size for d in done] == [2, 2]

    run(test, process, max_batch_size=8, max_wait_s=60.0)
    assert process.batches == [[100], [1, 2], [3, 4]]


def test_a_full_queue_refuses_at_once() -> None:
    process = Doubler()
    metrics = Metrics()

    async def test(batcher: MicroBatcher) -> None:
        first = await hold_worker(batcher, process)
        waiting = [asyncio.ensure_future(batcher.submit(1))]
        await until(lambda: batcher.depth == 1)
        batcher.check_room()  # room for one more: no refusal
        waiting.append(asyncio.ensure_future(batcher.submit(2)))
        await until(lambda: batcher.depth == 2)
        assert metrics.registry.get_sample_value("glimpse_queue_size") == 2
        with pytest.raises(Busy) as refused:
            await batcher.submit(3)
        assert refused.value.retry_after == 5
        with pytest.raises(Busy):
            batcher.check_room()  # what lets the API refuse before reading a body
        process.release.set()
        assert [d.result for d in await asyncio.gather(first, *waiting)] == [200, 2, 4]

    run(test, process, max_batch_size=1, max_queue_size=2, retry_after_s=5, metrics=metrics)


def test_a_cancelled_request_frees_its_slot_and_is_skipped() -> None:
    process = Doubler()

    async def test(batcher: MicroBatcher) -> None:
        first = await hold_worker(batcher, process)
        leaving = asyncio.ensure_future(batcher.submit(7))
        await until(lambda: batcher.depth == 1)
        leaving.cancel()
        await until(lambda: batcher.depth == 0)  # freed before the worker looks at it
        staying = asyncio.ensure_future(batcher.submit(8))  # the slot is usable again
        process.release.set()
        assert (await first).result == 200 and (await staying).result == 16
        assert leaving.cancelled()

    run(test, process, max_batch_size=4, max_queue_size=1)
    assert [7] not in process.batches and all(7 not in batch for batch in process.batches)


def test_a_failing_batch_fails_its_requests_only() -> None:
    process = Doubler()

    async def test(batcher: MicroBatcher) -> None:
        with pytest.raises(ValueError, match="negative"):
            await batcher.submit(-1)
        assert (await batcher.submit(4)).result == 8  # the worker survived

    run(test, process, max_batch_size=1)


def test_closing_fails_waiting_requests_and_refuses_new_ones() -> None:
    process = Doubler()
    batcher = MicroBatcher(process, max_batch_size=1, max_wait_s=0.0)
    batcher.start()

    async def test() -> None:
        first = await hold_worker(batcher, process)
        waiting = asyncio.ensure_future(batcher.submit(1))
        await until(lambda: batcher.depth == 1)
        closing = asyncio.ensure_future(asyncio.to_thread(batcher.close, 10))
        await until(lambda: waiting.done())
        process.release.set()
        await closing
        assert (await first).result == 200  # the batch in progress finishes
        with pytest.raises(NotReady):
            await waiting
        with pytest.raises(NotReady):
            await batcher.submit(2)
        with pytest.raises(NotReady):
            batcher.check_room()

    asyncio.run(test())


@pytest.mark.parametrize("limits", [{"max_batch_size": 0}, {"max_queue_size": 0}])
def test_limits_must_be_positive(limits) -> None:
    with pytest.raises(ValueError):
        MicroBatcher(Doubler(), **limits)
