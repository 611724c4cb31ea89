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


def _record(name: str, driver: str, anonymous: bool, attached: bool, day: int) -> VolumeRecord:
    return VolumeRecord(
        name=name,
        driver=driver,
        mountpoint=f"/v/{name}",
        created_at=datetime(2026, 1, day, tzinfo=UTC),
        scope="local",
        labels={"com.docker.volume.anonymous": ""} if anonymous else {},
        options={},
        attachments=(_ATTACHED,) if attached else (),
    )


records = st.builds(
    _record,
    st.sampled_from(NAMES),
    st.sampled_from(("local", "nfs")),
    st.booleans(),
    st.booleans(),
    st.integers(1, 3),
)
# (host, upserted records, names removed, a whole state (replace_volumes) instead)
changes = st.lists(
    st.tuples(
        st.sampled_from(HOSTS),
        st.lists(records, max_size=4),
        st.lists(st.sampled_from(NAMES), max_size=2),
        st.booleans(),
    ),
    max_size=12,
)
queries = st.builds(
    VolumeListQuery,
    host=st.one_of(st.none(), st.sampled_from((*HOSTS, "h9"))),
    system=st.booleans(),
    driver=st.one_of(st.none(), st.sampled_from(("local", "nfs"))),
    orphaned=st.one_of(st.none(), st.booleans()),
    q=st.one_of(st.none(), st.sampled_from(("", "a", "x", "anonymous"))),
    created_after=st.one_of(st.none(), st.just(datetime(2026, 1, 1, 12, tzinfo=UTC))),
    created_before=st.one_of(st.none(), st.just(datetime(2026, 1, 2, 12, tzinfo=UTC))),
)


def _unique(batch: list[VolumeRecord]) -> list[VolumeRecord]:
    return list({record.name: record for record in batch}.values())


def _expected(catalog: VolumeCatalog, model: dict[str, VolumeRecord]) -> list[VolumeView]:
    """The views of the model's records (an account of the changes kept by the test, not
    by the catalog), by name and id; and no view of anything else."""
    views = []
    for volume_id, record in model.items():
        view = catalog.get(volume_id)
        assert view is not None and view.record == record, volume_id
        views.append(view)
    for host in (None, *HOSTS):
        for name in NAMES:
            volume_id = f"{host}/{name}" if host else name
            assert (catalog.get(volume_id) is None) == (volume_id not in model), volume_id
    return sorted(views, key=lambda view: (view.record.name, view.record.id))


def _brute_force(views: list[VolumeView], query: VolumeListQuery) -> list[VolumeView]:
    def keeps(view: VolumeView) -> bool:
        record = view.record
        return (
            (query.system or not view.is_system)
            and (query.host is None or record.host == query.host)
            and (query.driver is None or record.driver == query.driver)
            and (query.orphaned is None or (not record.attachments) == query.orphaned)
            and (query.created_after is None or record.created_at > query.created_after)
            and (query.created_before is None or record.created_at < query.created_before)
            and (not query.q or query.q.lower() in view.search_text)
        )

    return [view for view in views if keeps(view)]


@given(changes, st.lists(queries, min_size=1, max_size=6))
def test_kept_subsets_equal_a_filter_of_every_view(
    sequence: list[tuple[str, list[VolumeRecord], list[str], bool]],
    asked: list[VolumeListQuery],
) -> None:
    catalog = VolumeCatalog()
    model: dict[str, VolumeRecord] = {}
    for host, upserts, removed, whole in sequence:
        batch = [record.model_copy(update={"host": host}) for record in _unique(upserts)]
        if whole:
            catalog.replace_volumes(tuple(_unique(upserts)), host=host)
            model = {key: record for key, record in model.items() if record.host != host}
        else:
            catalog.apply_delta(_unique(upserts), removed, host=host)
            for name in removed:
                model.pop(f"{host}/{name}", None)
        model.update({record.id: record for record in batch})
        every = _expected(catalog, model)
        assert catalog.views() == every
        for host_asked in (None, *HOSTS):
            for system in (True, False):
                query = VolumeListQuery(host=host_asked, system=system)
                assert catalog.views(host_asked, system) == _brute_force(every, query)
    every = _expected(catalog, model)
    for query in asked:
        assert matching_views(catalog, query) == _brute_force(every, query)


@given(st.lists(st.lists(records, max_size=5), max_size=6), queries)
def test_one_host_states_and_deltas_keep_the_same_subsets(
    states: list[list[VolumeRecord]], query: VolumeListQuery
) -> None:
    catalog = VolumeCatalog()
    model: dict[str, VolumeRecord] = {}
    for index, state in enumerate(states):
        batch = _unique(state)
        if index % 2:  # a delta on top: its records, and the first name of the state gone
            gone = [name for name in NAMES[:1] if name not in {r.name for r in batch}]
            catalog.apply_delta(batch, gone)
            model = {
                **{k: r for k, r in model.items() if k not in gone},
                **{r.id: r for r in batch},
            }
        else:
            catalog.replace_volumes(tuple(batch))
            model = {record.id: record for record in batch}
        every = _expected(catalog, model)
        assert catalog.views() == every
        assert catalog.views(None, False) == [view for view in every if not view.is_system]
    assert matching_views(catalog, query) == _brute_force(_expected(catalog, model), query)
