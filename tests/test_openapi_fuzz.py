"""Issue 5: the OpenAPI document covers the contract, and schemathesis finds nothing.

schemathesis (its CLI, a real process) generates a bounded number of cases per operation
from /api/v1/openapi.json and sends them to the running gateway, with the watcher and the
scanner behind it and a few real volumes on the private engine. It checks that no answer is
a 5xx, and that every status, content type and body is the one documented.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.engine import PrivateEngine
from tests.support.processes import Stack
from tests.support.trees import make_known_tree, mountpoint
from tests.support.waiting import wait_until

TOKEN = "vv-fuzz-token-0d9e"
MAX_EXAMPLES = 25
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
CONTRACT_ROUTES = {
    ("get", "/api/v1/volumes"),
    ("get", "/api/v1/volumes/{volume_id}"),
    ("get", "/api/v1/volumes/{volume_id}/attachments"),
    ("get", "/api/v1/volumes/{volume_id}/size"),
    ("post", "/api/v1/volumes/{volume_id}/size/refresh"),
    ("get", "/api/v1/scans/{scan_id}"),
    ("get", "/api/v1/scans/{scan_id}/status"),
    ("post", "/api/v1/volumes/bulk-scan"),
    ("get", "/api/v1/scan-methods"),
    ("get", "/api/v1/reports/orphaned"),
    ("get", "/api/v1/health"),
    ("get", "/api/v1/health/live"),
    ("get", "/api/v1/health/ready"),
}


@pytest.fixture
def full_stack(engine: PrivateEngine, stack: Stack) -> Stack:
    for name in ("vv-fuzz-a", "vv-fuzz-b"):
        engine.client.volumes.create(name)
    make_known_tree(mountpoint(engine, "vv-fuzz-a"))
    # Fuzzing may start many scans: let it, this test is about answers, not limits.
    stack.configure(VV_API_TOKEN=TOKEN, VV_SCAN_REQUESTS_PER_MINUTE=100_000)
    stack.start()
    stack.wait_http_ready()
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def ready() -> bool:
        health = httpx.get(stack.base_url + "/api/v1/health", headers=headers).json()
        return bool(health["status"] == "healthy")

    wait_until(ready, 20, message="stack never healthy")
    return stack


def _document(stack: Stack) -> dict[str, Any]:
    response = httpx.get(
        stack.base_url + "/api/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_openapi_document_has_every_contract_route_with_its_errors(full_stack: Stack) -> None:
    document = _document(full_stack)
    assert document["openapi"].startswith("3.")
    operations = {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert set(operations) >= CONTRACT_ROUTES
    for key, operation in operations.items():
        errors = {int(status) for status in operation["responses"] if int(status) >= 400}
        assert {405, 500} <= errors, key
        if key != ("get", "/api/v1/health/live"):
            assert 401 in errors, key
        for status in errors - {503}:
            schema = operation["responses"][str(status)]["content"]["application/json"]
            assert schema["schema"]["required"] == ["code", "message", "error", "request_id"], key
    for path in ("/api/v1/volumes/{volume_id}", "/api/v1/volumes/{volume_id}/size"):
        assert {"400", "404"} <= set(document["paths"][path]["get"]["responses"])
    refresh = document["paths"]["/api/v1/volumes/{volume_id}/size/refresh"]["post"]
    body = refresh["requestBody"]["content"]["application/json"]["schema"]
    assert {"async", "method"} <= set(body["properties"])
    assert "429" in refresh["responses"]
    bulk = document["paths"]["/api/v1/volumes/bulk-scan"]["post"]
    assert {"volume_ids", "all"} <= set(
        bulk["requestBody"]["content"]["application/json"]["schema"]["properties"]
    )
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert operations[("get", "/api/v1/health/live")]["security"] == []


def _schemathesis() -> list[str]:
    script = Path(sys.executable).parent / "schemathesis"
    if script.exists():
        return [str(script)]
    found = shutil.which("schemathesis")
    assert found, "schemathesis is not installed (it is in the dev extras: make setup)"
    return [found]


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    full_stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "schemathesis.json"
    command = [
        *_schemathesis(),
        "run",
        full_stack.base_url + "/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20240115",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--suppress-health-check",
        "all",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    summary = json.loads(report.read_text()) if report.exists() else {}
    cases = _count_cases(summary)
    with capsys.disabled():
        print(f"\nschemathesis: {cases} generated cases, exit code {run.returncode}")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert cases > 100, f"suspiciously few cases: {cases}\n{run.stdout[-3000:]}"
    assert full_stack["gateway"].alive
    assert "unhandled error" not in full_stack["gateway"].log_text()


def _count_cases(summary: dict[str, Any]) -> int:
    """Generated test cases, from schemathesis's JSON report."""
    return int(summary.get("test_cases", {}).get("generated", 0))
