"""The API's one table from error class to HTTP status, headers and JSON body."""

import inspect
import json

import pytest
from fastapi import FastAPI
from starlette.requests import Request

import service.errors
from api.errors import (
    STATUSES,
    ClientDisconnected,
    InternalError,
    InvalidFields,
    Unauthorized,
    error_response,
    status_of,
)
from service.errors import (
    Busy,
    GlimpseError,
    ImageTooLarge,
    ImageTooManyPixels,
    InvalidField,
    InvalidImage,
    NotReady,
    UnsupportedImageType,
)


def _request() -> Request:
    """A request to an app without models or metrics: only the error is looked at."""
    return Request({"type": "http", "app": FastAPI(), "headers": []})


def test_every_service_error_has_a_status_of_its_own() -> None:
    """A new error class in the service fails here until the API gives it a status."""
    classes = [
        cls
        for _, cls in inspect.getmembers(service.errors, inspect.isclass)
        if issubclass(cls, GlimpseError)
    ]
    assert len(classes) >= 8
    assert [cls.__name__ for cls in classes if cls not in STATUSES] == []


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidImage("the PNG data could not be decoded"), 400, "invalid_image"),
        (Unauthorized(), 401, "unauthorized"),
        (ImageTooLarge(5000), 413, "image_too_large"),
        (ImageTooManyPixels(100, 20, 20), 413, "image_too_many_pixels"),
        (UnsupportedImageType("no", frozenset({"PNG"})), 415, "unsupported_image_type"),
        (InvalidField("top_k", "top_k must be between 1 and 3"), 422, "invalid_field"),
        (InvalidFields([("image", "Field required")]), 422, "invalid_field"),
        (ClientDisconnected(), 499, "client_closed_request"),
        (InternalError(), 500, "internal_error"),
        (Busy(retry_after=3), 503, "busy"),
        (NotReady(), 503, "not_ready"),
    ],
)
def test_each_error_has_its_status_and_code(error: GlimpseError, status: int, code: str) -> None:
    assert (status_of(error), error.code) == (status, code)


def test_busy_says_when_to_retry_in_header_and_body() -> None:
    busy = Busy(retry_after=3)
    response = error_response(_request(), busy)
    assert response.status_code == 503 and response.headers["retry-after"] == "3"
    body = {"error": {"code": "busy", "message": busy.message, "retry_after": 3}}
    assert json.loads(response.body) == body


def test_unauthorized_names_the_scheme() -> None:
    response = error_response(_request(), Unauthorized())
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_details_follow_code_and_message() -> None:
    field = InvalidField("beam_size", "beam_size must be between 1 and 10")
    response = error_response(_request(), field)
    assert response.status_code == 422 and "retry-after" not in response.headers
    assert list(json.loads(response.body)["error"].items()) == [
        ("code", "invalid_field"),
        ("message", "beam_size must be between 1 and 10"),
        ("field", "beam_size"),
    ]
