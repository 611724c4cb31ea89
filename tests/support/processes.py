"""The services under test, run as real processes exactly as users run them.

`ServiceProcess` is one `python -m services.<name>` (or `honcho start`) process with its
output in a log file. `Stack` owns the environment shared by one test's services: a
private runtime directory (ZeroMQ ipc sockets), a data directory, a free loopback port and
the private Docker engine's address.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import psutil

from services.scanner.procname import TRACKER_PROCESS_NAME, WORKER_PROCESS_NAME
from tests.support.waiting import wait_until
from tests.support.ws import WsClient

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES: tuple[str, ...] = ("watcher", "scanner", "gateway")
HEALTH_LIVE_PATH = "/api/v1/health/live"
WS_PATH = "/api/v1/ws"

# Inherited variables that could point a service at something other than the test's
# private engine/directories.
_SCRUBBED_PREFIXES = ("VV_", "DOCKER_")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, and SIGKILL if it has not exited within `timeout`."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _venv_bin() -> str:
    return str(Path(sys.executable).parent)


class ServiceProcess:
    """One service process. Created stopped; `start()` launches it (again)."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log_dir: Path,
        argv: Sequence[str] | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.name = name
        self.env = dict(env)
        self.argv = list(argv) if argv is not None else [sys.executable, "-m", f"services.{name}"]
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._descendants: dict[int, psutil.Process] = {}

    # --- state ------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> ServiceProcess:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"===== start #{self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def send_signal(self, sig: int) -> None:
        self._remember_descendants()
        if self.alive:
            assert self.popen is not None
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.popen.wait(timeout)

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.popen is None:
            return None
        self.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
        self.reap_leftovers()
        return self.popen.returncode

    def kill(self, *, children: bool = False) -> int | None:
        """SIGKILL the process (a crash); its children too only if `children`."""
        if self.popen is None:
            return None
        self._remember_descendants()
        if self.alive:
            self.popen.kill()
        self.popen.wait(10)
        if children:
            self.reap_leftovers()
        return self.popen.returncode

    def restart(self, timeout: float = 10.0) -> ServiceProcess:
        self.terminate(timeout)
        return self.start()

    def _remember_descendants(self) -> None:
        if not self.alive:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self._descendants[child.pid] = child

    def reap_leftovers(self) -> None:
        """SIGKILL any child processes that outlived the main process."""
        survivors = []
        for proc in self._descendants.values():
            with contextlib.suppress(psutil.Error):
                if proc.is_running():  # also checks the pid was not reused
                    proc.kill()
                    survivors.append(proc)
        psutil.wait_procs(survivors, timeout=5)
        self._descendants.clear()

    # --- output -----------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Wait until `text` appears in the log; returns the whole log."""
        return wait_until(
            lambda: self.log_text() if text in self.log_text() else "",
            timeout,
            message=f"{text!r} not in the {self.name} log:\n{self.log_tail(30)}",
        )

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"exited {self.returncode}"
        return f"ServiceProcess({self.name!r}, {state})"


class Stack:
    """The environment and processes of one test's watcher + scanner + gateway."""

    def __init__(
        self,
        docker_host: str,
        tmp_dir: Path,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        # Short path: ZeroMQ ipc:// endpoints live here and sun_path is 108 bytes.
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="vvr-", dir="/tmp"))
        self.runtime_dir.chmod(0o700)
        self.data_dir = tmp_dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = tmp_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        env.update(
            PATH=os.pathsep.join([_venv_bin(), env.get("PATH", os.defpath)]),
            PYTHONUNBUFFERED="1",
            DOCKER_HOST=docker_host,  # in case anything falls back to docker.from_env()
            VV_HOST=self.host,
            VV_PORT=str(self.port),
            VV_RUNTIME_DIR=str(self.runtime_dir),
            VV_DATA_DIR=str(self.data_dir),
            VV_DOCKER_HOST=docker_host,
            VV_LOG_LEVEL="DEBUG",
            VV_SCAN_INTERVAL="0",  # no scheduled scans unless a test asks for them
        )
        env.update(overrides or {})
        self.env: dict[str, str] = env
        self.procs: dict[str, ServiceProcess] = {}

    # --- configuration ----------------------------------------------------------------

    def configure(self, **overrides: str | float | int) -> Stack:
        """Set VV_* variables for processes started from now on."""
        self.env.update({k: str(v) for k, v in overrides.items()})
        return self

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    # --- processes --------------------------------------------------------------------

    def process(self, name: str, argv: Sequence[str] | None = None) -> ServiceProcess:
        """The (possibly not yet started) process called `name`, with the current env."""
        proc = self.procs.get(name)
        if proc is None:
            proc = self.procs[name] = ServiceProcess(name, self.env, self.log_dir, argv=argv)
        elif not proc.alive:  # pick up configure() changes made since its last start
            proc.env = dict(self.env)
            if argv is not None:
                proc.argv = list(argv)
        return proc

    def start(self, *names: str) -> Stack:
        """Start the named services (default: all three), in the order given."""
        for name in names or SERVICES:
            if name not in SERVICES:
                raise ValueError(f"unknown service {name!r}; expected one of {SERVICES}")
            self.process(name).start()
        return self

    def honcho(self, *args: str) -> ServiceProcess:
        """Start `honcho start` from the repo root (the Procfile), as `make run` does."""
        script = Path(_venv_bin()) / "honcho"
        launcher = [str(script)] if script.exists() else [sys.executable, "-m", "honcho"]
        return self.process("honcho", argv=[*launcher, "start", *args]).start()

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.procs[name]

    def stop_all(self, timeout: float = 10.0) -> None:
        """SIGTERM every live process at once, wait, SIGKILL stragglers and leftovers."""
        procs = list(self.procs.values())
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            if proc.popen is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(max(deadline - time.monotonic(), 0.1))
            proc.kill(children=True)

    def close(self) -> None:
        self.stop_all()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    # --- talking to the gateway -------------------------------------------------------

    def http(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def ws(
        self, path: str = WS_PATH, *, origin: str | None = None, open_timeout: float = 10.0
    ) -> WsClient:
        return WsClient(
            f"ws://{self.host}:{self.port}{path}", origin=origin, open_timeout=open_timeout
        )

    def wait_http_ready(self, timeout: float = 30.0) -> httpx.Response:
        """Poll GET /api/v1/health/live until it answers 200; fail fast if gateway died."""
        url = self.base_url + HEALTH_LIVE_PATH

        def probe() -> httpx.Response | None:
            gateway = self.procs.get("gateway") or self.procs.get("honcho")
            if gateway is not None and gateway.popen is not None and not gateway.alive:
                raise AssertionError(
                    f"{gateway.name} exited with {gateway.returncode} before answering "
                    f"{url}:\n{gateway.log_tail(40)}"
                )
            try:
                response = httpx.get(url, timeout=2.0)
            except httpx.TransportError:
                return None
            return response if response.status_code == 200 else None

        response = wait_until(probe, timeout, interval=0.1, message=f"{url} never answered 200")
        assert response is not None
        return response

    def logs_report(self, lines: int = 80) -> list[tuple[str, str]]:
        """(title, log tail) of every process, for failure reports."""
        return [
            (f"{proc.name} log (tail, {proc!r})", proc.log_tail(lines) or "<empty>")
            for proc in self.procs.values()
        ]

    def __repr__(self) -> str:
        return f"Stack({self.base_url}, procs={list(self.procs.values())})"


def pool_children(stack: Stack) -> tuple[list[psutil.Process], psutil.Process | None]:
    """The scanner pool's worker processes (not multiprocessing's resource tracker), and its
    live-size tracker, if running. Each names itself first thing
    (services/scanner/procname.py); a child just spawned is waited for until it has."""
    named: dict[str, list[psutil.Process]] = {}

    def all_named() -> bool:
        named.clear()
        for child in psutil.Process(stack["scanner"].pid).children():
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    continue  # exited, not yet reaped
                name, cmdline = child.name(), " ".join(child.cmdline())
            except psutil.Error:
                continue  # exited
            if name in (WORKER_PROCESS_NAME, TRACKER_PROCESS_NAME):
                named.setdefault(name, []).append(child)
            elif "spawn_main" in cmdline:
                return False  # spawned, not yet named
        return True

    wait_until(all_named, 30, message="a pool child never named itself")
    trackers = named.get(TRACKER_PROCESS_NAME, [])
    return named.get(WORKER_PROCESS_NAME, []), (trackers[0] if trackers else None)
