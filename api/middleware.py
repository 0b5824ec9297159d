"""Pure ASGI middlewares: request metrics, the request body limit, strict UTF-8 form text.

Pure ASGI (not BaseHTTPMiddleware) so that they add no task per request and leave the
disconnect messages that `unless_disconnected` waits for untouched.
"""

import time

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from service.errors import ImageTooLarge, InvalidField
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


class StrictFormText:
    """Answer 422 `invalid_field` to a multipart text field that is not valid UTF-8.

    Starlette decodes such a field as Latin-1, so a route would answer a question that was
    never asked. The body is checked as it streams past, on its way to Starlette's parser;
    only text parts (those without a filename) are held, and only until each one ends.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
