"""The listing's query: filters, sort keys and paging, as the API validates them and the
read model applies them (readmodel/listing.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")

SortField = Literal[
    "name", "host", "driver", "created_at", "size_bytes", "attachments_count", "last_scan_at"
]
SORT_FIELDS: tuple[str, ...] = get_args(SortField)


class SortKey(BaseModel):
    field: SortField
    direction: Literal["asc", "desc"]

    def __str__(self) -> str:
        return f"{self.field}:{self.direction}"


def parse_bool(value: object) -> object:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError("must be true or false")
    return value


def rfc3339_text(value: object) -> object:
    # pydantic would take a bare number as a Unix time; the contract says RFC 3339.
    if isinstance(value, str) and not _RFC3339_START.match(value):
        raise ValueError("must be RFC 3339 (e.g. 2024-01-15T12:00:00Z)")
    return value


def needs_zone(value: datetime | None) -> datetime | None:
    if value is None:
        return value
    if value.tzinfo is None:
        raise ValueError("must be RFC 3339 with a time zone (e.g. 2024-01-15T12:00:00Z)")
    try:
        value.astimezone(UTC)  # year 1 at +14:00 is before year 1 in UTC
    except OverflowError:
        raise ValueError("is out of range once in UTC") from None
    return value


class VolumeListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(25, ge=1, le=1000)
    sort: str = Field("name:asc", max_length=512, description="field:dir[,field:dir...]")
    q: str | None = Field(None, max_length=256)
    driver: str | None = Field(None, max_length=256)
    host: str | None = Field(None, max_length=64, description="only this host's volumes")
    orphaned: bool | None = None
    system: bool = False
    created_after: datetime | None = None
    created_before: datetime | None = None

    _bools = field_validator("orphaned", "system", mode="before")(parse_bool)
    _texts = field_validator("created_after", "created_before", mode="before")(rfc3339_text)
    _zones = field_validator("created_after", "created_before")(needs_zone)

    @field_validator("sort")
    @classmethod
    def _check_sort(cls, value: str) -> str:
        parse_sort(value)
        return value

    def sort_keys(self) -> list[SortKey]:
        return parse_sort(self.sort)


def parse_sort(raw: str) -> list[SortKey]:
    keys: list[SortKey] = []
    for part in raw.split(","):
        field, _, direction = part.strip().partition(":")
        direction = direction or "asc"
        if field not in SORT_FIELDS:
            raise ValueError(f"unknown sort field {field!r}; one of {', '.join(SORT_FIELDS)}")
        if direction not in ("asc", "desc"):
            raise ValueError(f"unknown sort direction {direction!r}; asc or desc")
        keys.append(SortKey.model_validate({"field": field, "direction": direction}))
    return keys
