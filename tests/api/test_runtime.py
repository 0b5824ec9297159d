"""Memory handed back when the server is idle, never while a request is in flight."""

import asyncio
import threading

from api.runtime import TrimWhenIdle


class Held:
    """An ASGI app whose requests last until the test releases them."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:
        await self.release.wait()


def test_memory_is_returned_once_no_request_has_been_in_flight_for_the_delay() -> None:
    async def scenario() -> None:
        trims = threading.Semaphore(0)
        app = Held()
        # Margins of 150 ms or more on every side, so a loaded machine's late wake-ups
        # cannot pass for a trim that came too early or too late.
        middleware = TrimWhenIdle(app, delay_s=0.5, trim=trims.release)
        first = asyncio.create_task(middleware({"type": "http"}, None, None))
        await asyncio.sleep(0.7)
        assert not trims.acquire(blocking=False)  # busy: nothing is trimmed
        app.release.set()
        await first
        await asyncio.sleep(0.3)
        await middleware({"type": "http"}, None, None)  # a request within the delay
        await asyncio.sleep(0.35)  # past the first spell's end (0.5), before the second's (0.8)
        assert not trims.acquire(blocking=False)  # the first idle spell was cut short
        await asyncio.sleep(0.3)
        assert trims.acquire(timeout=2)  # idle for the delay: trimmed once
        await asyncio.sleep(0.7)
        assert not trims.acquire(blocking=False)

    asyncio.run(scenario())


def test_lifespan_and_websocket_scopes_pass_through() -> None:
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])

    middleware = TrimWhenIdle(app, delay_s=0.01, trim=lambda: seen.append("trim"))
    asyncio.run(middleware({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"] and middleware.in_flight == 0
