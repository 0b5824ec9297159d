"""A client that hangs up cancels its work: the one HTTP concern around a call to the service."""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from api.errors import ClientDisconnected

T = TypeVar("T")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, but give up (and cancel it) as soon as the client goes away.

    Cancelling a queued model request frees its queue slot, so clients that gave up do not
    keep others out. The request body has been read, so the next ASGI message is the
    disconnect.
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientDisconnected()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
