"""The decode budget: what fits runs, what does not waits or is refused, and memory is
returned once a burst of large decodes is over."""

import asyncio
import threading

import pytest

from service.admission import TRIM_AFTER_BYTES, DecodeBudget
from service.errors import Busy

MB = 2**20


class Gate:
    """Work for the budget's threads that runs until the test opens the gate."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.running = 0

    def work(self) -> str:
        self.running += 1
        self.opened.wait(timeout=10)
        return "done"


async def until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_what_fits_runs_at_once_and_what_does_not_waits_for_room() -> None:
    async def scenario() -> None:
        budget, gate = DecodeBudget(100 * MB, wait_s=5.0, retry_after_s=1), Gate()
        first = asyncio.create_task(budget.run(60 * MB, gate.work))
        await until(lambda: gate.running == 1)
        second = asyncio.create_task(budget.run(60 * MB, gate.work))
        await asyncio.sleep(0.1)
        assert gate.running == 1 and budget.used == 60 * MB  # the second waits, undecoded
        gate.opened.set()
        assert await asyncio.gather(first, second) == ["done", "done"]
        assert budget.used == 0

    asyncio.run(scenario())


def test_a_decode_that_does_not_fit_in_time_is_busy_before_it_runs() -> None:
    async def scenario() -> None:
        budget, gate = DecodeBudget(100 * MB, wait_s=0.2, retry_after_s=7), Gate()
        held = asyncio.create_task(budget.run(90 * MB, gate.work))
        await until(lambda: gate.running == 1)
        with pytest.raises(Busy) as refused:
            await budget.run(50 * MB, gate.work)
        assert refused.value.retry_after == 7 and gate.running == 1
        gate.opened.set()
        await held

    asyncio.run(scenario())


def test_large_decodes_leave_room_for_small_ones() -> None:
    async def scenario() -> None:
        budget, gate = DecodeBudget(80 * MB, wait_s=0.2, retry_after_s=1), Gate()
        large = asyncio.create_task(budget.run(60 * MB, gate.work))
        await until(lambda: gate.running == 1)
        with pytest.raises(Busy):  # 15 MB more would fit, but not within the small ones' room
            await budget.run(15 * MB, gate.work)
        small = asyncio.create_task(budget.run(5 * MB, gate.work))  # an ordinary photo
        await until(lambda: gate.running == 2)
        gate.opened.set()
        await asyncio.gather(large, small)

    asyncio.run(scenario())


def test_an_image_larger_than_the_budget_is_decoded_alone() -> None:
    async def scenario() -> None:
        budget, gate = DecodeBudget(10 * MB, wait_s=1.0, retry_after_s=1), Gate()
        gate.opened.set()
        assert await budget.run(500 * MB, gate.work) == "done"
        assert budget.used == 0

    asyncio.run(scenario())


def test_a_cancelled_request_holds_its_bytes_until_its_decode_ends() -> None:
    """A client that hangs up cannot free memory that a decode thread is still using."""

    async def scenario() -> None:
        budget, gate = DecodeBudget(100 * MB, wait_s=5.0, retry_after_s=1), Gate()
        task = asyncio.create_task(budget.run(70 * MB, gate.work))
        await until(lambda: gate.running == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert budget.used == 70 * MB
        gate.opened.set()
        await until(lambda: budget.used == 0)

    asyncio.run(scenario())


def test_memory_is_returned_once_a_burst_of_large_decodes_is_over() -> None:
    async def scenario() -> None:
        drained = threading.Event()
        budget = DecodeBudget(1024 * MB, 1.0, 1, on_drained=drained.set, trim_delay_s=0.2)
        gate = Gate()
        gate.opened.set()
        await budget.run(TRIM_AFTER_BYTES // 2, gate.work)
        await asyncio.sleep(0.3)
        assert not drained.is_set()  # small decodes: no walk of the heap
        await asyncio.gather(*(budget.run(TRIM_AFTER_BYTES // 2, gate.work) for _ in range(2)))
        gate.opened.clear()
        busy_again = asyncio.create_task(budget.run(MB, gate.work))
        await asyncio.sleep(0.3)
        assert not drained.is_set()  # not while images are being decoded again
        gate.opened.set()
        await busy_again
        await until(drained.is_set)

    asyncio.run(scenario())


def test_memory_is_not_returned_under_steady_load() -> None:
    """Small decodes one after another leave the budget empty between them: that is no burst
    that ended, and a trim would only slow the next model pass."""

    async def scenario() -> None:
        drained = threading.Event()
        budget = DecodeBudget(1024 * MB, 1.0, 1, on_drained=drained.set, trim_delay_s=0.2)
        gate = Gate()
        gate.opened.set()
        await budget.run(TRIM_AFTER_BYTES, gate.work)  # enough decoded to be worth a trim
        for _ in range(12):  # 0.6 s of steady load, the budget empty between decodes
            await asyncio.sleep(0.05)
            await budget.run(MB, gate.work)
        assert not drained.is_set()
        await until(drained.is_set)  # once the decodes stop

    asyncio.run(scenario())
