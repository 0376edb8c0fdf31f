"""Daemon settings: flags beat environment variables beat the repository's daemon: beat defaults; values checked."""

from __future__ import annotations

from dataclasses import fields

import pytest

from gitops_kaito.repo.config import DaemonConfig, SettingsError, parse_duration
from gitops_kaito.service.settings import RunSettings, resolve_settings


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


def test_repository_values_fill_only_what_flags_and_env_left_to_defaults() -> None:
    env = {"GITOPS_KAITO_LISTEN": "0.0.0.0:9000"}
    base = resolve_settings({"interval": "2m", "git_url": "file:///r"}, env)
    repo = DaemonConfig(interval="10m", jitter="1s", listen="0.0.0.0:7000", lease_name="models", log_format="json")
    s = base.with_repo(repo)
    assert s.interval == "2m", "the flag wins over the repository"
    assert s.listen == "0.0.0.0:9000", "the environment wins over the repository"
    assert (s.jitter_s, s.lease_name, s.log_format) == (1.0, "models", "json")
    assert base.with_repo(DaemonConfig()) == base, "nothing set in the repository changes nothing"


def test_settings_built_directly_are_never_overridden_by_the_repository() -> None:
    s = RunSettings(git_url="file:///r")
    assert s.with_repo(DaemonConfig(interval="10m", listen="0.0.0.0:1")) == s


def test_a_named_instance_from_the_repository_names_the_lease() -> None:
    base = resolve_settings({}, {})
    assert base.with_repo(DaemonConfig(), "team-a").lease_name == "gitops-kaito-leader-team-a"
    assert base.with_repo(DaemonConfig(lease_name="mine"), "team-a").lease_name == "mine"
    flagged = resolve_settings({"lease_name": "flagged"}, {})
    assert flagged.with_repo(DaemonConfig(lease_name="mine"), "team-a").lease_name == "flagged"


def test_every_repository_daemon_setting_is_a_run_setting() -> None:
    names = {f.name for f in fields(RunSettings)}
    assert {f.name for f in fields(DaemonConfig)} <= names


def test_repository_interval_is_checked() -> None:
    with pytest.raises(SettingsError, match=r"gitops-kaito\.yaml daemon: interval '0s' is shorter than 1s"):
        resolve_settings({}, {}).with_repo(DaemonConfig(interval="0s"))
    with pytest.raises(SettingsError, match="shorter than 1s"):
        resolve_settings({"interval": "500ms"}, {})


def test_durations_too_long_to_schedule_are_refused() -> None:
    """The schema lets `interval: 99999999999h` through; the scheduler's datetime arithmetic overflowed on it
    (OverflowError at start, or in every pass after a merged change)."""
    for daemon in (DaemonConfig(interval="99999999999h"), DaemonConfig(jitter="99999999999h")):
        with pytest.raises(SettingsError, match=r"gitops-kaito\.yaml daemon: .* is longer than 7 days"):
            resolve_settings({}, {}).with_repo(daemon)
    with pytest.raises(SettingsError, match="longer than 7 days"):
        resolve_settings({"interval": "169h"}, {})
    assert resolve_settings({"interval": "168h", "jitter": "1h"}, {}).interval_s == 7 * 24 * 3600


def test_a_listen_port_out_of_range_is_refused() -> None:
    """The schema takes up to five digits; binding 99999 raised OverflowError when the service started."""
    with pytest.raises(SettingsError, match=r"gitops-kaito\.yaml daemon: .*port 99999"):
        resolve_settings({}, {}).with_repo(DaemonConfig(listen="0.0.0.0:99999"))
    with pytest.raises(SettingsError, match="port 65536"):
        resolve_settings({"listen": "127.0.0.1:65536"}, {})
    assert resolve_settings({"listen": ":65535"}, {}).listen_address == ("0.0.0.0", 65535)
