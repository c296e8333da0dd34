"""Server settings: the knobs a deployment sets (page sizes are HAPI's defaults)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

__all__ = ["ServerSettings"]


class ServerSettings(BaseModel):
    """Settings of one server instance."""

    database: str = Field(":memory:", description="SQLite file path, ':memory:', or a SQLAlchemy URL")
    public_url: str | None = Field(
        None,
        description="The origin clients reach the server at (e.g. https://fhir.example.org); default: the request's",
    )
    default_page_size: int = Field(20, ge=1, description="_count when a search gives none (HAPI: 20)")
    max_page_size: int = Field(200, ge=1, description="The largest _count honoured (HAPI: 200)")
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Larger request bodies get 413")
    default_timezone_minutes: int = Field(0, description="Offset applied to dates searched without a zone")
    max_history: int = Field(1000, ge=1, description="Most entries a history Bundle returns")

    @property
    def default_tz(self) -> timedelta:
        return timedelta(minutes=self.default_timezone_minutes)
