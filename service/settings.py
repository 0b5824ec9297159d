"""Every knob of the service in one place, read from `GLIMPSE_*` environment variables."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "models" / "pretrained"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GLIMPSE_", env_file=None)

    caption_model: Path | None = Field(
        PRETRAINED_DIR / "captioner", description="captioner model directory ('' to disable)"
    )
    vqa_model: Path | None = Field(
        PRETRAINED_DIR / "vqa", description="VQA model directory ('' to disable)"
    )
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads")
