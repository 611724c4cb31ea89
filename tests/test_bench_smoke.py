"""Every benchmark script runs with tiny sizes and prints its rows, so none can rot.

No timing is asserted: timings are figures for docs/PERFORMANCE.md, not test outcomes. The
scripts use the session's private engine (`--docker-host`) instead of starting their own.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.run_all import SCRIPTS, command
from tests.support.engine import PrivateEngine
from tests.support.processes import REPO_ROOT


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_runs_and_prints_its_rows(
    name: str, docker_engine: PrivateEngine, tmp_path: Path
) -> None:
    out = tmp_path / "rows.json"
    argv = command(name, "smoke", ["--docker-host", docker_engine.host, "--json", str(out)])
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    rows = json.loads(out.read_text())["rows"]
    assert rows, f"{name} printed no rows"
    for row in rows:
        assert f"| {name} | {row['metric']}" in done.stdout
    # It cleaned up after itself on a shared engine.
    assert not docker_engine.api.volumes(filters={"label": "volumeviz.bench"})["Volumes"]
