"""What routes depend on: the app's state, its settings, the loaded service, and the API key.

Routes declare these with the `Annotated[..., Depends(...)]` aliases below (form fields are
in `api.forms`), so each route reads as "parse, call the service, shape the response". They
are `async` because none of them blocks: FastAPI runs a plain `def` dependency in a worker
thread, three thread hops per request for nothing.
"""

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import Unauthorized
from service.errors import NotReady
from service.inference import Inference
from service.metrics import Metrics
from service.settings import Settings


@dataclass
class AppState:
    """One app's settings, metrics and, once the models are loaded, the service."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    inference: Inference | None = None
    load_error: str | None = None

    def not_ready(self) -> NotReady:
        if self.load_error is not None:
            return NotReady(f"models failed to load: {self.load_error}")
        return NotReady()


async def get_state(request: Request) -> AppState:
    return request.app.state.glimpse


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_inference(state: StateDep) -> Inference:
    if state.inference is None:
        raise state.not_ready()
    return state.inference


InferenceDep = Annotated[Inference, Depends(get_inference)]

_bearer = HTTPBearer(auto_error=False, description="one of the keys in GLIMPSE_API_KEYS")


async def require_api_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Accept a request whose Bearer key is one of the configured keys.

    Every key is compared, in constant time, so the response time tells nothing about how
    much of a key was right or which key was close.
    """
    if not settings.api_keys:
        return
    if credentials is None:
        raise Unauthorized()
    given = credentials.credentials.encode()
    matched = False
    for key in settings.api_keys:
        matched |= hmac.compare_digest(given, key.get_secret_value().encode())
    if not matched:
        raise Unauthorized()
