"""The CLI starts, lists its commands and answers --version."""

from __future__ import annotations

import pytest

from gitops_kaito import __version__
from gitops_kaito.cli import build_parser, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: gitops-kaito" in capsys.readouterr().out


def test_parser_builds() -> None:
    assert build_parser().prog == "gitops-kaito"
