"""GET /v1/models: what is loaded, so clients can tell which model answered."""

from fastapi import APIRouter

from api.deps import InferenceDep
from api.schemas.common import error_responses
from api.schemas.models import ModelCard, ModelsResponse

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", responses=error_responses(401, 503))
async def list_models(inference: InferenceDep) -> ModelsResponse:
    return ModelsResponse(
        models=[ModelCard.model_validate(card) for card in inference.models.values()]
    )
