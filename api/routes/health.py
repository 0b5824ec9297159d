"""Liveness, readiness and Prometheus metrics; open even when API keys are set."""

from fastapi import APIRouter, Response

from api.deps import InferenceDep, StateDep
from api.schemas.common import Health, Readiness, error_responses

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def alive() -> Health:
    """The process answers; models may still be loading."""
    return Health()


@router.get("/readyz", responses=error_responses(503))
async def ready(inference: InferenceDep) -> Readiness:
    """Models are loaded and requests are served; 503 with the reason until then."""
    return Readiness(models=[card.id for card in inference.models.values()])


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus text format."""
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
