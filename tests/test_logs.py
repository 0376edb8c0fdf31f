"""Log lines: text for people, one JSON object per line with --log-format json or GITOPS_KAITO_LOG_FORMAT=json,
and a format switched live when the repository's daemon.logFormat changes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from gitops_kaito.cli import main
from gitops_kaito.service.logs import configure_logging, set_format

log = logging.getLogger("gitops_kaito.test")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def last_line(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_json_flag_gives_one_object_per_line_with_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-format", "json", "catalog", "skus"]) == 0
    capsys.readouterr()
    log.warning("pass ok", extra={"fields": {"reason": "webhook", "duration_s": 0.5}})
    entry = json.loads(last_line(capsys))
    assert entry["msg"] == "pass ok" and entry["level"] == "warning" and entry["logger"] == "gitops_kaito.test"
    assert entry["reason"] == "webhook" and entry["duration_s"] == 0.5 and entry["ts"].endswith("Z")


def test_environment_chooses_the_format_when_no_flag_does(capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITOPS_KAITO_LOG_FORMAT", "json")
    assert main(["catalog", "skus"]) == 0
    capsys.readouterr()
    log.warning("from env")
    assert json.loads(last_line(capsys))["msg"] == "from env"
    assert main(["--log-format", "text", "catalog", "skus"]) == 0, "the flag wins over the environment"
    capsys.readouterr()
    log.warning("from flag")
    assert last_line(capsys).endswith("warning from flag")


def test_set_format_switches_live(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="text")
    log.warning("before")
    assert last_line(capsys).endswith("warning before")
    set_format("json")
    log.warning("after")
    assert json.loads(last_line(capsys))["msg"] == "after"
