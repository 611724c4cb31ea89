"""The one typed settings object, read from the environment and `.env`.

Field names carry their units (Hypercorn style); the environment variable names are the
short ones users know from the README and the issues (`VV_POLL_INTERVAL`, ...).
"""

from __future__ import annotations

import os
import re
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A host's name: part of volume ids (`<host>/<name>`) and of URLs, so nothing else.
HOST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


def _default_runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"volumeviz-{os.getuid()}"


class Settings(BaseSettings):
    """Every setting of every service; each is documented in the README."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- gateway (HTTP + WebSocket)
    host: str = Field("127.0.0.1", validation_alias=_env("VV_HOST"))
    port: int = Field(8080, ge=0, le=65535, validation_alias=_env("VV_PORT"))
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:5173", "http://127.0.0.1:5173"],
        validation_alias=_env("VV_ALLOWED_ORIGINS"),
    )
    # Host names (with an optional :port) the gateway answers to; empty: its own names.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("VV_ALLOWED_HOSTS")
    )
    listen_backlog: int = Field(4096, ge=16, le=65535, validation_alias=_env("VV_LISTEN_BACKLOG"))
    ws_idle_timeout_seconds: float = Field(90.0, gt=0, validation_alias=_env("VV_WS_IDLE_TIMEOUT"))
    ws_max_message_bytes: int = Field(4096, gt=0, validation_alias=_env("VV_WS_MAX_MESSAGE_BYTES"))
    ws_max_frame_bytes: int = Field(65536, gt=0, validation_alias=_env("VV_WS_MAX_FRAME_BYTES"))
    ws_send_queue_messages: int = Field(
        256, gt=0, validation_alias=_env("VV_WS_SEND_QUEUE_MESSAGES")
    )
    ws_send_timeout_seconds: float = Field(10.0, gt=0, validation_alias=_env("VV_WS_SEND_TIMEOUT"))
    ws_compression: bool = Field(False, validation_alias=_env("VV_WS_COMPRESSION"))
    ws_client_messages_per_second: float = Field(
        20.0, gt=0, validation_alias=_env("VV_WS_CLIENT_MESSAGES_PER_SECOND")
    )
    volume_update_interval_seconds: float = Field(
        0.25, ge=0, validation_alias=_env("VV_VOLUME_UPDATE_INTERVAL")
    )

    # --- exposure
    api_token: SecretStr | None = Field(None, validation_alias=_env("VV_API_TOKEN"))
    scan_requests_per_minute: float = Field(
        60.0, gt=0, validation_alias=_env("VV_SCAN_REQUESTS_PER_MINUTE")
    )
    scan_request_burst: int = Field(20, ge=1, validation_alias=_env("VV_SCAN_REQUEST_BURST"))
    session_ttl_seconds: float = Field(43200.0, gt=0, validation_alias=_env("VV_SESSION_TTL"))

    # --- storage
    data_dir: Path = Field(Path("./data"), validation_alias=_env("VV_DATA_DIR"))

    # --- bus (ZeroMQ)
    runtime_dir: Path = Field(
        default_factory=_default_runtime_dir, validation_alias=_env("VV_RUNTIME_DIR")
    )
    bus_state_endpoint: str | None = Field(None, validation_alias=_env("VV_BUS_STATE_ENDPOINT"))
    bus_snapshot_endpoint: str | None = Field(
        None, validation_alias=_env("VV_BUS_SNAPSHOT_ENDPOINT")
    )
    bus_jobs_endpoint: str | None = Field(None, validation_alias=_env("VV_BUS_JOBS_ENDPOINT"))
    # Many hosts (issue 16): the gateway binds it and admits the agents listed in
    # VV_BUS_AUTHORIZED_KEYS; a watcher given it is an agent and connects out to it.
    bus_agents_endpoint: str | None = Field(None, validation_alias=_env("VV_BUS_AGENTS_ENDPOINT"))
    bus_authorized_keys: Path | None = Field(None, validation_alias=_env("VV_BUS_AUTHORIZED_KEYS"))
    heartbeat_interval_seconds: float = Field(
        1.0, gt=0, validation_alias=_env("VV_HEARTBEAT_INTERVAL")
    )
    heartbeat_liveness: int = Field(3, ge=1, validation_alias=_env("VV_HEARTBEAT_LIVENESS"))
    # CurveZMQ (Z85 keys, 40 characters), required for tcp:// endpoints: each service has
    # its own key pair, and each server admits only the public key of its one client.
    bus_curve_watcher_public: str | None = Field(
        None, validation_alias=_env("VV_BUS_CURVE_WATCHER_PUBLIC")
    )
    bus_curve_watcher_secret: SecretStr | None = Field(
        None, validation_alias=_env("VV_BUS_CURVE_WATCHER_SECRET")
    )
    bus_curve_gateway_public: str | None = Field(
        None, validation_alias=_env("VV_BUS_CURVE_GATEWAY_PUBLIC")
    )
    bus_curve_gateway_secret: SecretStr | None = Field(
        None, validation_alias=_env("VV_BUS_CURVE_GATEWAY_SECRET")
    )
    bus_curve_scanner_public: str | None = Field(
        None, validation_alias=_env("VV_BUS_CURVE_SCANNER_PUBLIC")
    )
    bus_curve_scanner_secret: SecretStr | None = Field(
        None, validation_alias=_env("VV_BUS_CURVE_SCANNER_SECRET")
    )
    # An agent host's own key pair (its watcher and its scanner pool use it), listed with
    # the host's name in the gateway's VV_BUS_AUTHORIZED_KEYS.
    bus_curve_agent_public: str | None = Field(
        None, validation_alias=_env("VV_BUS_CURVE_AGENT_PUBLIC")
    )
    bus_curve_agent_secret: SecretStr | None = Field(
        None, validation_alias=_env("VV_BUS_CURVE_AGENT_SECRET")
    )

    # --- watcher
    # The host's name on a dashboard of many hosts; default the engine's own (GET /info).
    host_id: str | None = Field(
        None, min_length=1, max_length=64, validation_alias=_env("VV_HOST_ID")
    )
    docker_host: str | None = Field(None, validation_alias=_env("VV_DOCKER_HOST"))
    poll_interval_seconds: float = Field(2.0, gt=0, validation_alias=_env("VV_POLL_INTERVAL"))
    poll_safety_interval_seconds: float = Field(
        300.0, gt=0, validation_alias=_env("VV_POLL_SAFETY_INTERVAL")
    )
    docker_timeout_seconds: float = Field(10.0, gt=0, validation_alias=_env("VV_DOCKER_TIMEOUT"))

    # --- scanner
    scanner_workers: int = Field(2, ge=1, le=64, validation_alias=_env("VV_SCANNER_WORKERS"))
    # 0: the CPUs the scanner may use; a scan never takes more than its share of them.
    walk_threads: int = Field(0, ge=0, le=256, validation_alias=_env("VV_WALK_THREADS"))
    scan_load_threshold_percent: float = Field(
        80.0, gt=0, le=100, validation_alias=_env("VV_SCAN_LOAD_THRESHOLD")
    )
    scan_cache_ttl_seconds: float = Field(300.0, ge=0, validation_alias=_env("VV_SCAN_CACHE_TTL"))
    sync_scan_timeout_seconds: float = Field(
        25.0, gt=0, validation_alias=_env("VV_SYNC_SCAN_TIMEOUT")
    )
    log_level: str = Field("INFO", validation_alias=_env("VV_LOG_LEVEL"))
    scan_progress_interval_seconds: float = Field(
        0.25, ge=0.01, validation_alias=_env("VV_SCAN_PROGRESS_INTERVAL")
    )
    scan_max_attempts: int = Field(3, ge=1, validation_alias=_env("VV_SCAN_MAX_ATTEMPTS"))
    scan_timeout_seconds: float = Field(3600.0, gt=0, validation_alias=_env("VV_SCAN_TIMEOUT"))
    scan_stall_timeout_seconds: float = Field(
        120.0, gt=0, validation_alias=_env("VV_SCAN_STALL_TIMEOUT")
    )
    scan_retry_backoff_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("VV_SCAN_RETRY_BACKOFF")
    )
    scan_retry_backoff_max_seconds: float = Field(
        3600.0, gt=0, validation_alias=_env("VV_SCAN_RETRY_BACKOFF_MAX")
    )
    scan_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("VV_SCAN_ROOTS")
    )
    tree_min_share: float = Field(0.001, ge=0, le=1, validation_alias=_env("VV_TREE_MIN_SHARE"))

    # --- live sizes (issue 13)
    live_sizes: Literal["auto", "directories", "off"] = Field(
        "auto", validation_alias=_env("VV_LIVE_SIZES")
    )
    live_history_interval_seconds: float = Field(
        600.0, gt=0, validation_alias=_env("VV_LIVE_HISTORY_INTERVAL")
    )
    # A followed volume's scheduled walk: the safety net, not the source of its figures.
    live_walk_interval_seconds: float = Field(
        86400.0, gt=0, validation_alias=_env("VV_LIVE_WALK_INTERVAL")
    )
    live_flush_seconds: float = Field(0.2, gt=0, le=1, validation_alias=_env("VV_LIVE_FLUSH"))

    # --- schedules, history, dashboard
    scan_interval_seconds: float = Field(3600.0, ge=0, validation_alias=_env("VV_SCAN_INTERVAL"))
    scheduler_tick_seconds: float = Field(5.0, gt=0, validation_alias=_env("VV_SCHEDULER_TICK"))
    history_days: float = Field(90.0, gt=0, validation_alias=_env("VV_HISTORY_DAYS"))
    history_thin_interval_seconds: float = Field(
        3600.0, gt=0, validation_alias=_env("VV_HISTORY_THIN_INTERVAL")
    )
    static_dir: Path | None = Field(None, validation_alias=_env("VV_STATIC_DIR"))

    @field_validator(
        "static_dir", "host_id", "bus_agents_endpoint", "bus_authorized_keys", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_origins", "allowed_hosts", "scan_roots", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().rstrip("/") or "/" for item in value.split(",") if item.strip()]
        return value

    @field_validator("host_id", mode="after")
    @classmethod
    def _host_id_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and not HOST_ID.fullmatch(value):
            raise ValueError("letters, digits, '.', '_' and '-' only (it is part of volume ids)")
        return value

    @field_validator("api_token", mode="after")
    @classmethod
    def _empty_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    # Endpoints default to ipc sockets in the private runtime directory.
    @property
    def state_endpoint(self) -> str:
        return self.bus_state_endpoint or f"ipc://{self.runtime_dir}/state.pub"

    @property
    def snapshot_endpoint(self) -> str:
        return self.bus_snapshot_endpoint or f"ipc://{self.runtime_dir}/state.snapshot"

    @property
    def jobs_endpoint(self) -> str:
        return self.bus_jobs_endpoint or f"ipc://{self.runtime_dir}/jobs"

    @property
    def gateway_hosts(self) -> list[str]:
        """`Host` values the gateway answers to: VV_ALLOWED_HOSTS, else its own names."""
        if self.allowed_hosts:
            return self.allowed_hosts
        bound = f"[{self.host}]" if ":" in self.host else self.host
        names = dict.fromkeys(["localhost", "127.0.0.1", "[::1]", bound])
        return [f"{name}:{self.port}" for name in names]

    @property
    def multi_host(self) -> bool:
        """The gateway serves agents of many hosts (VV_BUS_AUTHORIZED_KEYS is set)."""
        return self.bus_authorized_keys is not None

    @property
    def liveness_timeout_seconds(self) -> float:
        """Silence after which a peer counts as dead."""
        return self.heartbeat_interval_seconds * self.heartbeat_liveness

    @property
    def database_path(self) -> Path:
        return self.data_dir / "volumeviz.sqlite3"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
