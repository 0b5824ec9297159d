"""Every error leaves the API as `{"error": {"code", "message", ...}}`, whoever raised it.

The service raises typed `GlimpseError`s; FastAPI raises `RequestValidationError` for a
missing or mistyped field and Starlette raises `HTTPException` for unknown routes, bad
multipart bodies. All of them go through `error_response`, so clients
switch on one stable `code`. Anything else is a bug: 500 `internal_error`, logged, no details.
"""

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.errors import GlimpseError, InvalidField


class ClientDisconnected(GlimpseError):
    """The client went away before its answer was ready (nginx's 499); nobody reads this."""

    status = 499
    code = "client_closed_request"

    def __init__(self) -> None:
        super().__init__("the client closed the connection")


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


class HTTPError(GlimpseError):
    """A Starlette HTTPException (404, 405, unparsable body) in our shape."""

    def __init__(self, exc: HTTPException) -> None:
        super().__init__(str(exc.detail))
        self.status = exc.status_code
        phrase = HTTPStatus(exc.status_code).phrase  # "Method Not Allowed" -> method_not_allowed
        self.code = _CODES_BY_STATUS.get(exc.status_code) or _snake_case(phrase)
        self._headers = dict(exc.headers or {})

    def headers(self) -> dict[str, str]:
        return self._headers


_CODES_BY_STATUS = {400: "invalid_request"}


def _snake_case(phrase: str) -> str:
    return phrase.lower().replace(" ", "_").replace("-", "_")


def error_response(request: Request, error: GlimpseError) -> JSONResponse:
    metrics = getattr(getattr(request.app.state, "glimpse", None), "metrics", None)
    if metrics is not None:
        metrics.request_failures.labels(error.code).inc()
    return JSONResponse(error.to_dict(), status_code=error.status, headers=error.headers())


async def _glimpse_error(request: Request, exc: GlimpseError) -> JSONResponse:
    return error_response(request, exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [(_field_name(error["loc"]), error["msg"]) for error in exc.errors()]
    return error_response(request, InvalidFields(problems or [("body", "invalid request")]))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    if isinstance(exc.__cause__, GlimpseError):  # FastAPI wraps errors raised reading the body
        return error_response(request, exc.__cause__)
    return error_response(request, HTTPError(exc))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises `exc` after this response, so the server logs the traceback.
    return error_response(request, InternalError())


def _field_name(location: tuple) -> str:
    """("body", "question", 0) -> "question"; the first part says where, not what."""
    names = [str(part) for part in location[1:] if isinstance(part, str)] or [str(location[0])]
    return ".".join(names)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GlimpseError, _glimpse_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
