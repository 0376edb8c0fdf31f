"""Daemon settings: flags beat environment variables beat defaults; durations and addresses are checked."""

from __future__ import annotations

import pytest

from gitops_kaito.settings import SettingsError, parse_duration, resolve_settings


def test_flags_win_over_env_over_defaults() -> None:
    env = {"GITOPS_KAITO_BRANCH": "prod", "GITOPS_KAITO_INTERVAL": "5m", "GITOPS_KAITO_LEADER_ELECTION": "false"}
    s = resolve_settings({"branch": "main", "interval": None}, env)
    assert s.branch == "main"
    assert s.interval_s == 300
    assert s.leader_election is False
    assert resolve_settings({}, {}).listen_address == ("127.0.0.1", 8080)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("2m", 120), ("1h", 3600), ("250ms", 0.25)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_values_are_clear_errors() -> None:
    with pytest.raises(SettingsError, match="not a duration"):
        resolve_settings({"interval": "soon"}, {})
    with pytest.raises(SettingsError, match="HOST:PORT"):
        resolve_settings({"listen": "8080"}, {})


def test_token_is_redacted() -> None:
    assert resolve_settings({}, {"GITOPS_KAITO_GIT_TOKEN": "ghp_secret"}).redacted()["git_token"] == "***"
