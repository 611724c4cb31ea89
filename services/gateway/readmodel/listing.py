"""Filtering, multi-key sorting (nulls last) and paging of volume views."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from services.gateway.encoding import json_bytes
from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.readmodel.query import SortKey, VolumeListQuery
from services.gateway.readmodel.views import VolumeView, rfc3339


def matching_views(catalog: VolumeCatalog, query: VolumeListQuery) -> list[VolumeView]:
    """The views the query's filters select, by name. `system` and `host` come from the
    catalog's kept subsets; only the other filters, when given, cost a pass over those.
    The list may be the catalog's own: read it, never change it."""
    views = catalog.views(query.host, include_system=query.system)
    for narrow in _narrowings(query):  # each pass narrows the next
        views = narrow(views)
    return views


Narrowing = Callable[[list[VolumeView]], list[VolumeView]]


def _narrowings(query: VolumeListQuery) -> list[Narrowing]:
    """One pass per filter given, beside `system` and `host`; each a comprehension with no
    call per view (a call per view was most of a pass's cost)."""
    steps: list[Narrowing] = []
    if query.driver is not None:
        driver = query.driver
        steps.append(lambda views: [view for view in views if view.record.driver == driver])
    if query.orphaned is not None:
        orphaned = query.orphaned
        steps.append(
            lambda views: [view for view in views if (not view.record.attachments) == orphaned]
        )
    if query.created_after is not None:
        after = query.created_after
        steps.append(lambda views: [view for view in views if view.record.created_at > after])
    if query.created_before is not None:
        before = query.created_before
        steps.append(lambda views: [view for view in views if view.record.created_at < before])
    if query.q:
        needle = query.q.lower()
        steps.append(lambda views: [view for view in views if needle in view.search_text])
    return steps


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
    catalog: VolumeCatalog, query: VolumeListQuery
) -> tuple[list[VolumeView], list[VolumeView], dict[str, Any]]:
    """Every match in order, the page's views and the envelope around them (without
    `data`)."""
    keys = query.sort_keys()
    matches = sort_views(matching_views(catalog, query), keys)
    return (matches, *page_of(matches, query, keys))


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
            # May be the catalog's own list (the default query): kept only while the
            # version holds (_check_version above), which every change bumps.
            matches = sort_views(matching_views(self.catalog, query), keys)
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
