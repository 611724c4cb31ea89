"""Filtering, multi-key sorting (nulls last) and paging of volume views."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Any

from services.gateway.encoding import json_bytes
from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.readmodel.query import SortKey, VolumeListQuery
from services.gateway.readmodel.views import VolumeView, rfc3339


def filter_views(views: Iterable[VolumeView], query: VolumeListQuery) -> list[VolumeView]:
    needle = query.q.lower() if query.q else None
    selected = []
    for view in views:
        record = view.record
        if view.is_system and not query.system:
            continue
        if query.driver is not None and record.driver != query.driver:
            continue
        if query.host is not None and record.host != query.host:
            continue
        if query.orphaned is not None and (not record.attachments) != query.orphaned:
            continue
        if query.created_after is not None and record.created_at <= query.created_after:
            continue
        if query.created_before is not None and record.created_at >= query.created_before:
            continue
        if needle is not None and needle not in view.search_text:
            continue
        selected.append(view)
    return selected


def sort_views(views: list[VolumeView], keys: list[SortKey]) -> list[VolumeView]:
    """Stable sorts from the last key to the first; nulls go last in either direction.
    The catalog's views come by name already: the default `name:asc` costs no sort."""
    if [(key.field, key.direction) for key in keys] == [("name", "asc")]:
        return views
    ordered = views
    for key in reversed(keys):
        present = [view for view in ordered if view.sort_value(key.field) is not None]
        missing = [view for view in ordered if view.sort_value(key.field) is None]
        present.sort(key=lambda view: view.sort_value(key.field), reverse=key.direction == "desc")
        ordered = present + missing
    return ordered


def applied_filters(query: VolumeListQuery) -> dict[str, Any]:
    filters: dict[str, Any] = {"system": query.system}
    if query.q is not None:
        filters["q"] = query.q
    if query.driver is not None:
        filters["driver"] = query.driver
    if query.host is not None:
        filters["host"] = query.host
    if query.orphaned is not None:
        filters["orphaned"] = query.orphaned
    if query.created_after is not None:
        filters["created_after"] = rfc3339(query.created_after)
    if query.created_before is not None:
        filters["created_before"] = rfc3339(query.created_before)
    return filters


def list_page(
    views: Iterable[VolumeView], query: VolumeListQuery, keys: list[SortKey] | None = None
) -> tuple[list[VolumeView], dict[str, Any]]:
    """The page's views and the envelope around them (without `data`)."""
    keys = keys if keys is not None else query.sort_keys()
    return page_of(sort_views(filter_views(views, query), keys), query, keys)


class ListingCache:
    """Filtered and sorted matches by (catalog version, filters, sort), and each page's
    encoded body by (catalog version, query).

    Paging through a list, or many dashboards asking for the same page, then costs a slice
    instead of a filter and a sort of every volume, and the same page again costs nothing
    but a lookup. Every change of the catalog bumps its version, so a stale list is never
    served; older entries are dropped at once.
    """

    def __init__(self, catalog: VolumeCatalog, size: int = 32, pages: int = 256) -> None:
        self.catalog = catalog
        self.size = size
        self.pages = pages
        self._version = -1
        self._matches: OrderedDict[str, list[VolumeView]] = OrderedDict()
        self._bodies: OrderedDict[bytes, bytes] = OrderedDict()
        # Listing answers by where they were made: "front" (before Quart, http/
        # cached_front.py), "cached" (kept bytes, in Quart) or "encoded" (a new page).
        self.answers: Counter[str] = Counter()

    def _check_version(self) -> None:
        if self._version != self.catalog.version:
            self._matches.clear()
            self._bodies.clear()
            self._version = self.catalog.version

    def cached_body(self, raw_query: bytes, answered_by: str = "cached") -> bytes | None:
        """The body already encoded for this exact query string in this catalog version
        (so a repeated request needs neither validating nor encoding), or None."""
        self._check_version()
        body = self._bodies.get(raw_query)
        if body is not None:
            self._bodies.move_to_end(raw_query)
            self.answers[answered_by] += 1
        return body

    def encoded_page(self, query: VolumeListQuery, raw_query: bytes) -> bytes:
        """The whole `GET /volumes` body (VolumeListOut) for a validated query, kept under
        the query string it came from."""
        self._check_version()
        page, envelope = self.page(query)
        body = json_bytes({"data": [view.json for view in page], **envelope})
        self.answers["encoded"] += 1
        self._bodies[raw_query] = body
        if len(self._bodies) > self.pages:
            self._bodies.popitem(last=False)
        return body

    def page(self, query: VolumeListQuery) -> tuple[list[VolumeView], dict[str, Any]]:
        keys = query.sort_keys()
        self._check_version()
        key = query.model_dump_json(exclude={"page", "page_size"})
        matches = self._matches.get(key)
        if matches is None:
            matches = sort_views(filter_views(self.catalog.views(), query), keys)
            self._matches[key] = matches
            if len(self._matches) > self.size:
                self._matches.popitem(last=False)
        else:
            self._matches.move_to_end(key)
        return page_of(matches, query, keys)


def page_of(
    matches: list[VolumeView], query: VolumeListQuery, keys: list[SortKey]
) -> tuple[list[VolumeView], dict[str, Any]]:
    start = (query.page - 1) * query.page_size
    envelope = {
        "page": query.page,
        "page_size": query.page_size,
        "total": len(matches),
        "sort": ",".join(str(key) for key in keys),
        "filters": applied_filters(query),
    }
    return matches[start : start + query.page_size], envelope
