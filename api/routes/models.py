"""GET /v1/models: what is loaded, so clients can tell which model answered."""

from fastapi import APIRouter

from api.deps import ReadyDep
from api.schemas import ModelsResponse, error_responses

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", responses=error_responses(401, 503))
async def list_models(ready: ReadyDep) -> ModelsResponse:
    return ModelsResponse(models=list(ready.models.values()))
