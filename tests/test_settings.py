"""The settings object reads only its own VV_* variables (and `.env`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.settings import Settings


def test_generic_variables_do_not_configure_the_services(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("VV_PORT", "VV_HOST", "VV_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORT", "5200")  # honcho sets PORT for every process it starts
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "elsewhere"))
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.data_dir == Path("data")


def test_vv_variables_and_dotenv_configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VV_HOST", raising=False)
    (tmp_path / ".env").write_text("VV_HOST=127.0.0.2\n")
    monkeypatch.setenv("VV_PORT", "9000")
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.2", 9000)
