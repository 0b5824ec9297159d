"""Every error leaves the API as `{"error": {"code", "message", ...}}`, whoever raised it.

The service raises typed `GlimpseError`s, which carry no HTTP: `STATUSES` below is the one
place that gives each class its status (and `_headers` the headers some of them need).
FastAPI raises `RequestValidationError` for a missing or mistyped field and Starlette raises
`HTTPException` for unknown routes and bad multipart bodies; they are answered in the same
shape, so clients switch on one stable `code`. Anything else is a bug: 500 `internal_error`,
logged, no details.
"""

from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from service.errors import (
    Busy,
    GlimpseError,
    ImageTooLarge,
    ImageTooManyPixels,
    InvalidField,
    InvalidImage,
    LabelsUnavailable,
    NotReady,
    OutOfDomain,
    UnsupportedImageType,
)


class Unauthorized(GlimpseError):
    code = "unauthorized"

    def __init__(self, message: str = "missing or invalid API key") -> None:
        super().__init__(message)


class ClientDisconnected(GlimpseError):
    """The client went away before its answer was ready (nginx's 499); nobody reads this."""

    code = "client_closed_request"

    def __init__(self) -> None:
        super().__init__("the client closed the connection")


class RequestTimeout(GlimpseError):
    """The request body did not arrive in time (a slow or stalled upload holds a slot)."""

    code = "request_timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive within {seconds:g} s")
        self.seconds = seconds

    def details(self) -> dict[str, object]:
        return {"timeout_s": self.seconds}


class InternalError(GlimpseError):
    def __init__(self) -> None:
        super().__init__("internal server error; this is a bug, please report it")


class InvalidFields(InvalidField):
    """FastAPI's validation errors, named by field; `field` is the first one."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        field, message = problems[0]
        super().__init__(field, f"{field}: {message}")
        self.problems = problems

    def details(self) -> dict[str, object]:
        errors = [{"field": field, "message": message} for field, message in self.problems]
        return {**super().details(), "errors": errors}


# A subclass without an entry of its own gets its nearest parent's status.
STATUSES: dict[type[GlimpseError], int] = {
    GlimpseError: 500,
    InvalidImage: 400,
    Unauthorized: 401,
    RequestTimeout: 408,
    ImageTooLarge: 413,
    ImageTooManyPixels: 413,
    LabelsUnavailable: 404,
    UnsupportedImageType: 415,
    InvalidField: 422,
    OutOfDomain: 422,
    ClientDisconnected: 499,
    Busy: 503,
    NotReady: 503,
}

_CODES_BY_STATUS = {400: "invalid_request"}


def status_of(error: GlimpseError) -> int:
    return next(STATUSES[cls] for cls in type(error).__mro__ if cls in STATUSES)


def _headers(error: GlimpseError) -> dict[str, str]:
    if isinstance(error, Busy):
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, Unauthorized):
        # RFC 9110 section 15.5.2: a 401 must name the scheme that would succeed.
        return {"WWW-Authenticate": "Bearer"}
    return {}


def error_response(request: Request, error: GlimpseError) -> JSONResponse:
    return _respond(
        request, status_of(error), error.code, error.message, error.details(), _headers(error)
    )


def _respond(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: dict[str, object],
    headers: dict[str, str],
) -> JSONResponse:
    metrics = getattr(getattr(request.app.state, "glimpse", None), "metrics", None)
    if metrics is not None:
        metrics.request_failures.labels(code).inc()
    body = {"error": {"code": code, "message": message, **details}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _glimpse_error(request: Request, exc: GlimpseError) -> JSONResponse:
    return error_response(request, exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [(_field_name(error["loc"]), error["msg"]) for error in exc.errors()]
    return error_response(request, InvalidFields(problems or [("body", "invalid request")]))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """A Starlette HTTPException (404, 405, unparsable body) in our shape."""
    if isinstance(exc.__cause__, GlimpseError):  # FastAPI wraps errors raised reading the body
        return error_response(request, exc.__cause__)
    phrase = HTTPStatus(exc.status_code).phrase  # "Method Not Allowed" -> method_not_allowed
    code = _CODES_BY_STATUS.get(exc.status_code) or _snake_case(phrase)
    headers = dict(exc.headers or {})
    return _respond(request, exc.status_code, code, str(exc.detail), {}, headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises `exc` after this response, so the server logs the traceback.
    return error_response(request, InternalError())


def _snake_case(phrase: str) -> str:
    return phrase.lower().replace(" ", "_").replace("-", "_")


def _field_name(location: tuple) -> str:
    """("body", "question", 0) -> "question"; the first part says where, not what."""
    names = [str(part) for part in location[1:] if isinstance(part, str)] or [str(location[0])]
    return ".".join(names)


# Each handler takes the class it is registered for: the exception is typed `Any` here, as in
# FastAPI's own `exception_handlers` (Starlette's type wants handlers that take any Exception).
ExceptionHandler = Callable[[Request, Any], Coroutine[Any, Any, Response]]
EXCEPTION_HANDLERS: dict[type[Exception], ExceptionHandler] = {
    GlimpseError: _glimpse_error,
    RequestValidationError: _validation_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}


def install_error_handlers(app: FastAPI) -> None:
    for exc_class, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exc_class, handler)
