"""The catalog keeps its views by name and the listing's commonest subsets (user volumes,
one host's) per change; after any sequence of changes every subset equals a filter and a
sort of every view, and every listing query equals a filter of every view."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from common.messages import Attachment, VolumeRecord
from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.readmodel.listing import matching_views
from services.gateway.readmodel.query import VolumeListQuery
from services.gateway.readmodel.views import VolumeView

HOSTS = ("h1", "h2", "h3")
NAMES = ("a", "b", "c", "buildx_buildkit_x", "d" * 64, "e")  # two of them system volumes
_ATTACHED = Attachment(
    container_id="c" * 64, container_name="c", mount_path="/data", rw=True, state="running"
)


def _record(name: str, anonymous: bool, attached: bool, day: int) -> VolumeRecord:
    return VolumeRecord(
        name=name,
        driver="local",
        mountpoint=f"/v/{name}",
        created_at=datetime(2026, 1, day, tzinfo=UTC),
        scope="local",
        labels={"com.docker.volume.anonymous": ""} if anonymous else {},
        options={},
        attachments=(_ATTACHED,) if attached else (),
    )


records = st.builds(
    _record, st.sampled_from(NAMES), st.booleans(), st.booleans(), st.integers(1, 3)
)
# (host, upserted records, names removed) or (host, a whole state)
changes = st.lists(
    st.tuples(
        st.sampled_from(HOSTS),
        st.lists(records, max_size=4),
        st.lists(st.sampled_from(NAMES), max_size=2),
        st.booleans(),  # a whole state (replace_volumes) instead of a delta
    ),
    max_size=12,
)
queries = st.builds(
    VolumeListQuery,
    host=st.one_of(st.none(), st.sampled_from((*HOSTS, "h9"))),
    system=st.booleans(),
    orphaned=st.one_of(st.none(), st.booleans()),
    q=st.one_of(st.none(), st.sampled_from(("", "a", "x", "anonymous"))),
    created_after=st.one_of(st.none(), st.just(datetime(2026, 1, 1, 12, tzinfo=UTC))),
)


def _everything(catalog: VolumeCatalog) -> list[VolumeView]:
    found = [catalog.get(volume_id) for volume_id in catalog.names()]
    return sorted(
        (view for view in found if view is not None),
        key=lambda view: (view.record.name, view.record.id),
    )


def _brute_force(views: list[VolumeView], query: VolumeListQuery) -> list[VolumeView]:
    def keeps(view: VolumeView) -> bool:
        record = view.record
        return (
            (query.system or not view.is_system)
            and (query.host is None or record.host == query.host)
            and (query.orphaned is None or (not record.attachments) == query.orphaned)
            and (query.created_after is None or record.created_at > query.created_after)
            and (not query.q or query.q.lower() in view.search_text)
        )

    return [view for view in views if keeps(view)]


def _unique(batch: list[VolumeRecord]) -> list[VolumeRecord]:
    return list({record.name: record for record in batch}.values())


@given(changes, st.lists(queries, min_size=1, max_size=6))
def test_kept_subsets_equal_a_filter_of_every_view(
    sequence: list[tuple[str, list[VolumeRecord], list[str], bool]],
    asked: list[VolumeListQuery],
) -> None:
    catalog = VolumeCatalog()
    for host, upserts, removed, whole in sequence:
        if whole:
            catalog.replace_volumes(tuple(_unique(upserts)), host=host)
        else:
            catalog.apply_delta(_unique(upserts), removed, host=host)
        every = _everything(catalog)
        assert catalog.views() == every
        for host_asked in (None, *HOSTS):
            for system in (True, False):
                query = VolumeListQuery(host=host_asked, system=system)
                assert catalog.views(host_asked, system) == _brute_force(every, query)
    every = _everything(catalog)
    for query in asked:
        assert matching_views(catalog, query) == _brute_force(every, query)


@given(st.lists(st.lists(records, max_size=5), max_size=6), queries)
def test_one_host_states_keep_the_same_subsets(
    states: list[list[VolumeRecord]], query: VolumeListQuery
) -> None:
    catalog = VolumeCatalog()
    for state in states:
        catalog.replace_volumes(tuple(_unique(state)))
        every = _everything(catalog)
        assert catalog.views() == every
        assert catalog.views(None, False) == [view for view in every if not view.is_system]
    assert matching_views(catalog, query) == _brute_force(_everything(catalog), query)
