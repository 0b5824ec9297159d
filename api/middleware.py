"""Two pure ASGI middlewares: request metrics and the request body limit.

Pure ASGI (not BaseHTTPMiddleware) so that they add no task per request and leave the
disconnect messages that `unless_disconnected` waits for untouched.
"""

import time

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from service.errors import ImageTooLarge
from service.metrics import Metrics


class RequestMetrics:
    """Latency of every HTTP request by route template (not raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", None) or _mount_path(scope)
            self.metrics.request_duration.labels(route, str(status)).observe(
                time.perf_counter() - started
            )


def _mount_path(scope: Scope) -> str:
    """Static files are a mount, not a route; everything else unmatched shares one label."""
    return "/static" if scope.get("root_path", "").endswith("/static") else "unmatched"


class BodyLimit:
    """Answer 413 `image_too_large` to a body over `max_body_bytes`, before it is buffered.

    A declared Content-Length over the limit is refused without reading a byte; a body sent
    without one (chunked) is counted as it arrives and refused at the first chunk too many.
    Starlette would otherwise spool any upload, however large, to disk before the route runs.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_image_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_image_bytes = max_image_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            response = error_response(Request(scope), ImageTooLarge(self.max_image_bytes))
            await response(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise ImageTooLarge(self.max_image_bytes)
            return message

        await self.app(scope, counted_receive, send)
