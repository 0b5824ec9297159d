"""Memory handed back when the server is idle, never while a request is in flight."""

import asyncio
import threading
from collections.abc import Callable

from api.runtime import TrimWhenIdle


class Held:
    """An ASGI app whose requests last until the test releases them."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:
        await self.release.wait()


def test_memory_is_returned_once_no_request_has_been_in_flight_for_the_delay() -> None:
    """The loop's timers are caught and fired by hand, so no late wake-up can decide it."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        timers: list[tuple[float, Callable, tuple]] = []

        def call_later(delay: float, callback: Callable, *args: object) -> object:
            if getattr(callback, "__self__", None) is middleware:
                return timers.append((delay, callback, args))
            return original(delay, callback, *args)  # asyncio.sleep's own timers

        original, loop.call_later = loop.call_later, call_later  # type: ignore[method-assign]

        def fire(index: int) -> None:
            delay, callback, args = timers[index]
            assert delay == 0.5
            callback(*args)

        trims = threading.Semaphore(0)
        app = Held()
        middleware = TrimWhenIdle(app, delay_s=0.5, trim=trims.release)
        first = asyncio.create_task(middleware({"type": "http"}, None, None))
        await asyncio.sleep(0)
        assert timers == []  # busy: no idle spell has begun
        app.release.set()
        await first
        assert len(timers) == 1  # the first idle spell
        await middleware({"type": "http"}, None, None)  # a request within the delay
        assert len(timers) == 2
        fire(0)
        await asyncio.sleep(0.1)
        assert not trims.acquire(blocking=False)  # the first idle spell was cut short

        app.release.clear()
        held = asyncio.create_task(middleware({"type": "http"}, None, None))
        await asyncio.sleep(0)
        fire(1)
        await asyncio.sleep(0.1)
        assert not trims.acquire(blocking=False)  # a request in flight: never trimmed
        app.release.set()
        await held
        assert len(timers) == 3
        fire(2)
        assert trims.acquire(timeout=5)  # idle for the delay: trimmed once
        await asyncio.sleep(0.1)
        assert not trims.acquire(blocking=False) and len(timers) == 3  # once, and no more

    asyncio.run(scenario())


def test_lifespan_and_websocket_scopes_pass_through() -> None:
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])

    middleware = TrimWhenIdle(app, delay_s=0.01, trim=lambda: seen.append("trim"))
    asyncio.run(middleware({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"] and middleware.in_flight == 0
