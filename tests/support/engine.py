"""A private Docker engine for the test suite.

`PrivateEngine.start()` launches its own `dockerd` with every piece of state (data root,
exec root, pid file, API socket) inside a fresh short temporary directory, so the tests
never see nor touch the volumes of the machine's real engine. Networking is switched off
(`--bridge=none`, no iptables), which is all the suite needs: containers run with
`network_mode="none"`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, NotFound

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


class EngineError(RuntimeError):
    """The private engine could not be started."""


def find_dockerd() -> str:
    """Path of the dockerd binary, or a clear error naming what to install."""
    found = shutil.which("dockerd")
    for candidate in (found, "/usr/sbin/dockerd", "/usr/bin/dockerd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise EngineError(
        "dockerd not found: the tests need a real Docker engine binary. "
        "Install Debian's docker.io package (run `make test`, which calls "
        "scripts/ensure-test-packages.sh, or `apt-get install -y docker.io busybox-static`)."
    )


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(root.resolve())
    found: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 5:
                continue
            # Field 5 is the mount point with space, tab, newline, backslash octal-escaped.
            point = fields[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_all_under(root: Path) -> None:
    for point in _mounts_under(root):
        result = subprocess.run(["umount", "-R", point], capture_output=True, check=False)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


class PrivateEngine:
    """A dockerd owned by the test session. Use `start()`, then `stop()`."""

    def __init__(self, root: Path, process: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.data_root = root / "data"
        self.exec_root = root / "exec"
        self.socket_path = root / "docker.sock"
        self.log_path = root / "dockerd.log"
        self.pidfile = root / "docker.pid"
        self.host = f"unix://{self.socket_path}"
        self.process = process
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            raise EngineError("the private engine is not running")
        return self._client

    @property
    def api(self) -> docker.APIClient:
        return self.client.api

    # --- life cycle -------------------------------------------------------------------

    @classmethod
    def start(cls, timeout: float = START_TIMEOUT) -> PrivateEngine:
        if os.geteuid() != 0:
            raise EngineError(
                "the private Docker engine needs root (dockerd mounts and runs runc); "
                "run the tests as root"
            )
        # Keep the path short: the API socket lives here and sun_path is 108 bytes.
        root = Path(tempfile.mkdtemp(prefix="vv-", dir="/tmp"))
        engine = cls(root, cls._launch(root, root / "data"))
        try:
            engine._wait_ready(timeout)
        except BaseException:
            engine.stop()
            raise
        return engine

    @staticmethod
    def _launch(root: Path, data_root: Path) -> subprocess.Popen[bytes]:
        argv = [
            find_dockerd(),
            "--data-root", str(data_root),
            "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "docker.pid"),
            "-H", f"unix://{root / 'docker.sock'}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        with open(root / "dockerd.log", "ab") as log:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def pause_daemon(self) -> None:
        """Stop dockerd and keep everything it made, as an engine restart or outage does."""
        if self._client is not None:
            with contextlib.suppress(DockerException, OSError):
                self._client.close()
            self._client = None
        self._stop_process()

    def resume_daemon(self, data_root: Path | None = None, timeout: float = START_TIMEOUT) -> None:
        """Start dockerd again on the same socket, with `data_root` if given (a move of
        DockerRootDir); returns once it answers."""
        if data_root is not None:
            self.data_root = data_root
        self.process = self._launch(self.root, self.data_root)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineError(
                    f"dockerd exited with code {self.process.returncode} before becoming "
                    f"ready; last log lines:\n{self.log_tail()}"
                )
            if self.socket_path.exists():
                try:
                    # The constructor already asks the daemon for its API version.
                    client = docker.DockerClient(base_url=self.host, timeout=60)
                    if client.ping():
                        self._client = client
                        return
                    client.close()
                except (DockerException, OSError) as exc:
                    last_error = exc
            time.sleep(0.1)
        raise EngineError(
            f"dockerd not ready after {timeout:.0f}s (last error: {last_error!r}); "
            f"last log lines:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Remove everything the session made, stop dockerd, delete its directory."""
        if self._client is not None:
            if self.process.poll() is None:
                with contextlib.suppress(DockerException, OSError):
                    self.remove_all()
            with contextlib.suppress(DockerException, OSError):
                self._client.close()
            self._client = None
        self._stop_process()
        unmount_all_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():  # e.g. a mount that came back busy; one more go.
            unmount_all_under(self.root)
            shutil.rmtree(self.root, ignore_errors=True)

    def _stop_process(self) -> None:
        pgid = self.process.pid  # start_new_session: dockerd leads its own group.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        # Whatever is left of the group (a managed containerd, shims) is ours too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    # --- helpers ----------------------------------------------------------------------

    def remove_all(self) -> None:
        """Force-remove every container and volume on this (private) engine."""
        for container in self.client.containers.list(all=True):
            with contextlib.suppress(NotFound, APIError):
                container.remove(force=True, v=True)
        for volume in self.client.volumes.list():
            with contextlib.suppress(NotFound, APIError):
                volume.remove(force=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"<no dockerd log: {exc}>"
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"PrivateEngine(host={self.host!r})"
