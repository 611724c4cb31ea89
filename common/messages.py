"""Every message that crosses the bus: typed, versioned, validated where it arrives.

Protocol (one JSON document per ZeroMQ frame; `v` is the schema version, `kind` the type):

State (Clone pattern), watcher PUB -> gateway SUB, topics `state` and `hb`:
    StateDelta      one change: the volumes added or changed, the names removed, the
                    engine's status, with the watcher's `epoch` (instance id) and `seq`
                    (one more than the delta before)
    Heartbeat       every service's liveness; the watcher's carries its latest `seq`
    Gateway DEALER -> watcher ROUTER: SnapshotRequest, answered with a StateSnapshot (the
    whole set at a `seq`). A subscriber applies a delta only on top of `seq - 1`; one that
    sees a new epoch, a gap, or a heartbeat seq ahead of its own asks for a snapshot.

Agents (issue 16): on a gateway of many hosts, each host's watcher connects out with one
DEALER to the gateway's agents ROUTER and speaks the same state messages on it: StateDelta,
StateSnapshot and its Heartbeat (which names the `host` it speaks for) up, SnapshotRequest
down. The gateway takes the host from the key the message came with, stamps it on every
VolumeRecord (`host`; the record's `id` is then `<host>/<name>`) and keeps a clone of each
host's state; its scanner workers join the jobs ROUTER the same way, and get only jobs for
their host's volumes.

Scan jobs (Paranoid Pirate), scanner worker DEALER <-> gateway ROUTER:
    worker  -> gateway  WorkerHeartbeat  every interval: ready for work?, current job
    gateway -> worker   GatewayHeartbeat every interval to each known worker
    gateway -> worker   ScanJob          only to a worker that said it is ready
    worker  -> gateway  ScanProgress     at most every 250 ms per job
    worker  -> gateway  ScanFinished     repeated every interval until acknowledged
    gateway -> worker   ScanAck          after the outcome is stored
    A worker's bus heartbeats run on a clock of their own, whatever its walk is doing; a
    walk that stops moving is ended with SCAN_TIMEOUT and reported in `stuck`.

Live sizes (issue 13), the scanner's tracker DEALER <-> the same gateway ROUTER:
    tracker -> gateway  LiveStatus  every interval (its clock): mode, counts, its epoch and
                        the `seq` of its latest LiveSizes
    gateway -> tracker  LiveFollow  the volumes to follow (the whole set, small), sent when
                        it changes and whenever the tracker's status shows an older one;
                        `resend` asks for every figure again (a gap in `seq`, a restart),
                        `resync` names volumes to read again in full (a walk disagreed)
    tracker -> gateway  LiveSizes   changed figures, coalesced, with `seq` one more than the
                        one before under the same `epoch`; a gateway that sees a gap asks
                        for a resend (`complete`: every followed volume), so a lost
                        message never leaves a figure wrong
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1

ScanMethod = Literal["native", "du"]
# Where a stored result's figures came from: a scan job's method, or the live tracker.
ResultMethod = Literal["native", "du", "live"]
ScanErrorCode = Literal[
    "VOLUME_NOT_FOUND",
    "SCAN_PERMISSION_ERROR",
    "SCAN_PATH_ERROR",
    "SCAN_TIMEOUT",
    "SCANNER_UNAVAILABLE",
    "SCAN_WORKER_LOST",
    "SCAN_FAILED",
]


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    v: Literal[1] = 1


# --- shared value types -------------------------------------------------------------


class Attachment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    container_id: str
    container_name: str
    mount_path: str
    rw: bool
    state: str


class VolumeRecord(BaseModel):
    """A Docker volume as the watcher saw it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    driver: str
    mountpoint: str
    created_at: datetime
    scope: str
    labels: dict[str, str]
    options: dict[str, str]
    attachments: tuple[Attachment, ...]
    # Set by a gateway of many hosts on what an agent sent (never by a watcher): the host
    # whose engine has the volume.
    host: str | None = None

    @property
    def id(self) -> str:
        """The volume's id in the API: its name, or `<host>/<name>` on a gateway of many
        hosts (two hosts may hold volumes of the same name)."""
        return volume_id_of(self.host, self.name)


def volume_id_of(host: str | None, name: str) -> str:
    """The id of the volume `name` of `host` (None: on a gateway of one host)."""
    return f"{host}/{name}" if host is not None else name


def split_volume_id(volume_id: str) -> tuple[str | None, str]:
    """(host, name) of a volume id: the inverse of `VolumeRecord.id` (host None: one host's
    id, which is its name; a name never holds a '/')."""
    host, separator, name = volume_id.partition("/")
    return (host, name) if separator else (None, volume_id)


class ScanResultData(BaseModel):
    """A finished measurement, as the contract's scan result (less `cache_hit`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    volume_id: str
    total_size: int
    disk_usage: int
    file_count: int
    directory_count: int
    largest_file: int
    skipped: int
    scanned_at: datetime
    method: ResultMethod
    duration: int = Field(description="nanoseconds")
    filesystem_type: str
    tree_available: bool = Field(False, description="a directory tree was kept (native)")


class TreeNode(BaseModel):
    """One directory of a pruned tree (services/scanner/tree.py says what is kept). Figures
    are cumulative (the directory and everything below it); `own_*` are its own entries
    (its files and its own blocks), `other_*` the subdirectories that were pruned."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(description="escaped as common/names.py says; the root's is empty")
    parent: int = Field(description="index of the parent node; -1 for the root")
    depth: int
    apparent: int
    disk: int
    files: int
    dirs: int = Field(description="directories below it")
    own_apparent: int
    own_disk: int
    own_files: int
    other_apparent: int
    other_disk: int
    other_files: int
    other_dirs: int


class LargeFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    path: str = Field(description="from the volume's root, escaped as common/names.py says")
    size: int
    disk_usage: int


class ScanTree(BaseModel):
    """What a native scan keeps beside its totals: the directory tree, pruned, and the
    largest files. Parents come before their children in `nodes`; the root is first."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    nodes: tuple[TreeNode, ...]
    largest_files: tuple[LargeFile, ...]
    min_share: float = Field(description="the share of the disk usage a node needed")


class ScanFailure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    code: ScanErrorCode
    message: str


# --- state (watcher -> gateway) -------------------------------------------------------


class EngineStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    reachable: bool
    error: str | None = None
    volumes_dir: str | None = None  # DockerRootDir/volumes: where scans may go by default


class StateSnapshot(_Message):
    kind: Literal["state"] = "state"
    epoch: str
    seq: int
    engine: EngineStatus
    volumes: tuple[VolumeRecord, ...]


class StateDelta(_Message):
    kind: Literal["state_delta"] = "state_delta"
    epoch: str
    seq: int
    engine: EngineStatus
    upserts: tuple[VolumeRecord, ...] = ()  # added or changed, whole
    removed: tuple[str, ...] = ()  # names


class SnapshotRequest(_Message):
    kind: Literal["snapshot_request"] = "snapshot_request"
    requester: str


class Heartbeat(_Message):
    kind: Literal["heartbeat"] = "heartbeat"
    service: str
    instance: str
    sent_at: datetime = Field(default_factory=utc_now)
    seq: int = 0
    engine: EngineStatus | None = None
    host: str | None = None  # an agent's: the host it speaks for (VV_HOST_ID, or the engine's)


# --- scan jobs (gateway <-> scanner workers) ------------------------------------------


class StuckWalk(BaseModel):
    """A walk that stopped moving (a hung filesystem): its job has ended with SCAN_TIMEOUT,
    and the worker holding the stuck thread is out of the pool until the walk returns."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    scan_id: str
    volume_id: str
    since: datetime  # when the walk last moved


class WorkerHeartbeat(_Message):
    kind: Literal["worker_heartbeat"] = "worker_heartbeat"
    worker_id: str
    ready: bool
    current_scan_id: str | None = None
    throttled: bool = False
    host_busy_percent: float = 0.0
    retired: bool = False  # replaced in the pool: takes no job, exits once it holds none
    stuck: StuckWalk | None = None


class GatewayHeartbeat(_Message):
    kind: Literal["gateway_heartbeat"] = "gateway_heartbeat"
    instance: str


class ScanJob(_Message):
    kind: Literal["scan_job"] = "scan_job"
    scan_id: str
    volume_id: str
    mountpoint: str
    method: ScanMethod
    expected_entries: int | None = None  # from the previous scan, for the progress estimate
    attempt: int = 1
    volumes_dir: str | None = None  # the engine's, for the scanner's confinement check
    # Job policy travels with the job: past either limit the worker ends it with SCAN_TIMEOUT.
    timeout_seconds: float = Field(3600.0, gt=0)
    stall_timeout_seconds: float = Field(120.0, gt=0)  # without one entry walked


class ScanProgress(_Message):
    kind: Literal["scan_progress"] = "scan_progress"
    scan_id: str
    volume_id: str
    progress: int = Field(ge=0, le=100)
    files_processed: int
    current_size: int
    throttled: bool = False


class ScanFinished(_Message):
    kind: Literal["scan_finished"] = "scan_finished"
    scan_id: str
    volume_id: str
    worker_id: str
    attempt: int = 1  # the job's attempt this worker was given
    result: ScanResultData | None = None
    failure: ScanFailure | None = None
    tree: ScanTree | None = None


class ScanAck(_Message):
    kind: Literal["scan_ack"] = "scan_ack"
    scan_id: str


# --- live sizes (scanner tracker <-> gateway) ------------------------------------------

LiveMode = Literal["filesystem", "directories", "unavailable", "starting"]


class LiveTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    volume_id: str
    mountpoint: str
    created_at: datetime  # a volume removed and made again under its name is another one


class LiveFollow(_Message):
    kind: Literal["live_follow"] = "live_follow"
    # One more with every send, from the gateway's start time in ms (so a restarted
    # gateway never repeats one); the tracker's status echoes the last it applied, and
    # what a send asked (resend, resync) is asked again until the echo reaches it.
    version: int
    volumes_dir: str | None
    volumes: tuple[LiveTarget, ...]
    resend: bool = False
    resync: tuple[str, ...] = ()


class LiveSize(BaseModel):
    """A followed volume's figures, exact as of `updated_at`; `stale` while they are not
    (events were lost: it is being read again)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    volume_id: str
    total_size: int
    disk_usage: int
    file_count: int
    directory_count: int
    updated_at: datetime
    stale: bool = False


class LiveSizes(_Message):
    kind: Literal["live_sizes"] = "live_sizes"
    tracker_id: str
    epoch: str
    seq: int
    sizes: tuple[LiveSize, ...] = ()
    unfollowed: tuple[str, ...] = ()  # volumes it stopped following (figures from walks)
    # A resend: `sizes` holds every volume it follows; any other live figure is not vouched.
    complete: bool = False


class LiveStatus(_Message):
    kind: Literal["live_status"] = "live_status"
    tracker_id: str
    epoch: str
    seq: int  # of its latest LiveSizes
    follow_version: int  # of the LiveFollow it has applied; -1 before the first
    mode: LiveMode
    reason: str | None = None  # why it is unavailable
    followed: int = 0  # volumes whose figures are live
    pending: int = 0  # volumes waiting for their first read (or a read again)
    not_followable: int = 0  # volumes it cannot follow (another filesystem): walks only
    events_per_second: float = 0.0
    events_total: int = 0
    resyncs_total: int = 0  # volumes read again because events were lost
    bytes_per_directory: float = 0.0
    directories: int = 0


BusMessage = Annotated[
    StateSnapshot
    | StateDelta
    | SnapshotRequest
    | Heartbeat
    | WorkerHeartbeat
    | GatewayHeartbeat
    | ScanJob
    | ScanProgress
    | ScanFinished
    | ScanAck
    | LiveFollow
    | LiveSizes
    | LiveStatus,
    Field(discriminator="kind"),
]

_BUS_MESSAGE = TypeAdapter[BusMessage](BusMessage)


def encode(message: _Message) -> bytes:
    return message.model_dump_json().encode()


def decode(payload: bytes) -> BusMessage:
    """Validate one frame; raises pydantic.ValidationError for anything malformed."""
    return _BUS_MESSAGE.validate_json(payload)
