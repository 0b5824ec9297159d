"""Pure ASGI middlewares: request metrics, the request body limit and deadline, refusal of
model requests while the model queue is full, strict UTF-8 form text, and the security headers
of every answer.

Pure ASGI (not BaseHTTPMiddleware) so that they add no task per request and leave the
disconnect messages that `unless_disconnected` waits for untouched.
"""

import asyncio
import time

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import AppState
from api.errors import RequestTimeout, error_response
from service.errors import GlimpseError, ImageTooLarge, InvalidField
from service.metrics import Metrics


class HttpMiddleware:
    """Passes lifespan and websocket scopes straight through, so that each middleware below
    only says what it does to an HTTP request (`http`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """What the middleware does to one HTTP request."""
        raise NotImplementedError


class RequestMetrics(HttpMiddleware):
    """Latency of every HTTP request by route template (not raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
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


class BodyLimit(HttpMiddleware):
    """Answer 413 `image_too_large` to a body over `max_body_bytes`, before it is buffered.

    A declared Content-Length over the limit is refused without reading a byte; a body sent
    without one (chunked) is counted as it arrives and refused at the first chunk too many.
    Starlette would otherwise spool any upload, however large, to disk before the route runs.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_image_bytes: int) -> None:
        super().__init__(app)
        self.max_body_bytes = max_body_bytes
        self.max_image_bytes = max_image_bytes

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
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


class RefuseWhenBusy(HttpMiddleware):
    """Answer 503 `busy` (with Retry-After) to a model request (POST /v1/...) while the model
    queue is full, from its headers: its body is never parsed or decoded (`BodyDeadline`, outside,
    receives and drops it).

    Refused only at the queue, an upload was parsed and decoded first, on the CPU and under the
    interpreter lock the model thread needs, and its 503 waited behind other requests' uploads
    (a median of 40-160 ms at 128 clients, against 10-35 ms refused here).
    """

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        super().__init__(app)
        self.state = state

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        inference = self.state.inference
        if inference is not None and scope["method"] == "POST" and scope["path"].startswith("/v1/"):
            try:
                inference.check_room()
            except GlimpseError as refusal:
                await error_response(Request(scope), refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)


_CLOSE = (b"connection", b"close")


class BodyDeadline(HttpMiddleware):
    """Answer 408 `request_timeout` (and close the connection) to a request whose body has not
    all arrived `seconds` after the request began.

    Without it a client that trickles its upload a few bytes a second holds a socket and a
    request slot for as long as it likes. Only reading the body is timed: once it is complete,
    waiting for a disconnect (`unless_disconnected`) is not. An answer ready before the body
    has all arrived (an error, a refusal, a 413 for a body over the limit) first receives and
    drops the rest of the body, up to `drain_bytes` in all, under the same deadline: closing a
    socket with unread bytes makes the kernel reset the connection, and the client may never
    read the answer (a test saw it once the API answered fast enough). A body that does not
    end in time or runs past `drain_bytes` closes the connection instead, or uvicorn would go on
    reading it, however slowly it came, with no deadline.
    """

    def __init__(self, app: ASGIApp, seconds: float, drain_bytes: int) -> None:
        super().__init__(app)
        self.seconds = seconds
        self.drain_bytes = drain_bytes

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        deadline = time.monotonic() + self.seconds
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "0")
        chunked = "chunked" in headers.get("transfer-encoding", "")
        body_done = not chunked and declared in ("", "0")
        too_large = declared.isdigit() and int(declared) > self.drain_bytes
        received = 0
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done, received
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                raise RequestTimeout(self.seconds) from None
            received += len(message.get("body", b""))
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        async def body_dropped() -> bool:
            """Whether the rest of the body arrived in time and within `drain_bytes` (and was
            dropped)."""
            try:
                while not too_large and not body_done and received <= self.drain_bytes:
                    await timed_receive()
            except RequestTimeout:
                return False
            return body_done

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_done and not await body_dropped():
                    message = {**message, "headers": [*message.get("headers", []), _CLOSE]}
            await send(message)

        try:
            await self.app(scope, timed_receive, watched_send)
        except RequestTimeout as error:  # raised where no handler turned it into an answer
            if started:
                raise
            await error_response(Request(scope), error)(scope, receive, watched_send)


# The page loads only its own script and stylesheet and draws the upload from a blob: URL;
# the API answers JSON or PNG and needs nothing. /docs is FastAPI's Swagger UI: its script and
# stylesheet come from jsDelivr and it starts with an inline script.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class SecurityHeaders(HttpMiddleware):
    """The headers a browser-facing service sends with every answer, errors included: no MIME
    sniffing, a Content-Security-Policy (no framing), no Referer sent on."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = DOCS_POLICY if scope["path"].startswith("/docs") else PAGE_POLICY
        added = [
            (b"x-content-type-options", b"nosniff"),
            (b"content-security-policy", policy.encode()),
            (b"referrer-policy", b"no-referrer"),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class StrictFormText(HttpMiddleware):
    """Answer 422 `invalid_field` to a multipart text field that is not valid UTF-8.

    Starlette decodes such a field as Latin-1, so a route would answer a question that was
    never asked. The body is checked as it streams past, on its way to Starlette's parser;
    only text parts (those without a filename) are held, and only until each one ends.
    """

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type, params = parse_options_header(Headers(scope=scope).get("content-type"))
        boundary = params.get(b"boundary", b"")
        if content_type != b"multipart/form-data" or not boundary:
            await self.app(scope, receive, send)  # Starlette rejects a missing boundary
            return
        checker = TextPartChecker(boundary)

        async def checked_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                checker.write(message.get("body", b""))
                if checker.bad_field is not None:
                    field = checker.bad_field
                    raise InvalidField(field, f"{field}: the text is not valid UTF-8")
            return message

        await self.app(scope, checked_receive, send)


class TextPartChecker:
    """Feeds a multipart body to python-multipart and notes the first text part (one
    without a filename) whose bytes are not UTF-8. A body that does not parse is left to
    Starlette, which rejects it with its own message."""

    def __init__(self, boundary: bytes) -> None:
        self.bad_field: str | None = None
        self._header, self._disposition, self._text = bytearray(), bytearray(), bytearray()
        self._part: dict[bytes, bytes] | None = None  # options of the text part being read
        self._parser: MultipartParser | None = MultipartParser(
            boundary,
            {
                "on_header_field": lambda data, a, b: self._header.extend(data[a:b]),
                "on_header_value": self._on_header_value,
                "on_header_end": self._header.clear,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
            },
        )

    def write(self, chunk: bytes) -> None:
        if self._parser is None or self.bad_field is not None:
            return
        try:
            self._parser.write(chunk)
        except MultipartParseError:
            self._parser = None

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition.extend(data[start:end])

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(bytes(self._disposition))
        self._part = None if b"filename" in options else options
        self._disposition.clear()

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part is not None:
            self._text.extend(data[start:end])

    def _on_part_end(self) -> None:
        if self._part is not None and self.bad_field is None:
            try:
                self._text.decode("utf-8")
            except UnicodeDecodeError:
                self.bad_field = self._part.get(b"name", b"").decode("latin-1") or "field"
        self._text.clear()
