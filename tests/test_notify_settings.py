"""Notification settings: flags and GITOPS_KAITO_NOTIFY_* environment, checked at start, the URL never shown whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gitops_kaito.service.metrics import Metrics
from gitops_kaito.service.notify import Request, Sender
from gitops_kaito.service.service import build_notifier
from gitops_kaito.service.settings import RunSettings, SettingsError, resolve_settings

URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"


def test_environment_sets_the_sink_and_flags_win() -> None:
    env = {"GITOPS_KAITO_NOTIFY_URL": URL, "GITOPS_KAITO_NOTIFY_FORMAT": "slack",
           "GITOPS_KAITO_NOTIFY_CLUSTER": "prod"}
    s = resolve_settings({}, env)
    assert (s.notify_url, s.notify_format, s.notify_cluster) == (URL, "slack", "prod")
    assert resolve_settings({"notify_format": "teams"}, env).notify_format == "teams"
    assert resolve_settings({}, {}).notify_url == "" and resolve_settings({}, {}).notify_format == "generic"


def test_the_url_is_never_shown_whole() -> None:
    s = resolve_settings({}, {"GITOPS_KAITO_NOTIFY_URL": URL})
    assert s.redacted()["notify_url"] == "https://hooks.slack.com/***"
    assert "XXXXXXXX" not in repr(s)


def test_bad_notification_settings_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="--notify-format takes one of generic, slack, teams"):
        RunSettings(notify_url=URL, notify_format="email").check_notify()
    with pytest.raises(SettingsError, match="http\\(s\\) URL with a host"):
        RunSettings(notify_url="ftp://example.test/x").check_notify()
    with pytest.raises(SettingsError, match="does not exist"):
        RunSettings(notify_url=URL, notify_secret_file=str(tmp_path / "none")).check_notify()
    short = tmp_path / "short"
    short.write_bytes(b"too-short\n")
    with pytest.raises(SettingsError, match="shorter than 16 bytes"):
        RunSettings(notify_url=URL, notify_secret_file=str(short)).check_notify()
    good = tmp_path / "good"
    good.write_bytes(b"0123456789abcdef0123\n")
    assert RunSettings(notify_url=URL, notify_secret_file=str(good)).notify_secret() == b"0123456789abcdef0123"
    with pytest.raises(SettingsError, match="signs generic notifications; --notify-format is slack"):
        RunSettings(notify_url=URL, notify_format="slack", notify_secret_file=str(good)).check_notify()


def test_cli_refuses_bad_notification_flags(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from gitops_kaito.cli import main

    for name in ("NOTIFY_URL", "NOTIFY_FORMAT", "NOTIFY_SECRET_FILE"):
        monkeypatch.delenv(f"GITOPS_KAITO_{name}", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--git-url", "file:///x", "--notify-format", "email"])
    assert exited.value.code == 2
    assert main(["run", "--git-url", "file:///x", "--notify-url", "ftp://example.test/secret-path"]) == 2
    err = capsys.readouterr().err
    assert "http(s) URL with a host" in err and "secret-path" not in err


def test_build_notifier_counts_outcomes_per_sink_and_result() -> None:
    assert build_notifier(RunSettings(), Metrics()) is None
    metrics = Metrics()
    notifier = build_notifier(RunSettings(notify_url=URL, notify_format="teams", context="kind-dev"), metrics)
    assert notifier is not None
    assert [s.name for s in notifier.sinks] == ["teams"] and notifier.cluster == "kind-dev"
    count = notifier.sender.outcome
    request = Request(notifier.sinks[0], b"{}", (), 3)
    count(request, "sent")
    count(request, "dropped")
    count(request, "sent")
    text = metrics.render()
    assert b'gitops_kaito_notifications_total{result="sent",sink="teams"} 6.0' in text
    assert b'gitops_kaito_notifications_total{result="dropped",sink="teams"} 3.0' in text
    assert isinstance(notifier.sender, Sender)
    notifier.stop(1)


def test_deployment_takes_the_url_from_an_optional_secret_only() -> None:
    deploy = Path(__file__).resolve().parent.parent / "deploy"
    deployment = yaml.safe_load((deploy / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["GITOPS_KAITO_NOTIFY_URL"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"], ref["optional"]) == ("gitops-kaito-notify", "url", True)
    volume = next(v for v in pod["volumes"] if v["name"] == "notify")
    assert volume["secret"]["optional"] is True
    active = [line for line in (deploy / "config.env").read_text().splitlines() if not line.startswith("#")]
    assert not any(line.startswith("GITOPS_KAITO_NOTIFY_URL") for line in active), "the URL is a secret"


def test_a_url_the_sender_cannot_use_is_refused_without_showing_it() -> None:
    """A bad port made redact_url raise (the service crashed at start); a space reached the sender, whose error
    (http.client's InvalidURL) quoted the URL's path, the secret part, into the log."""
    for url in ("https://hooks.example.test:abc/services/SECRETPATH", "https://hooks.example.test:99999/SECRETPATH",
                "https://hooks.example.test/services/SECRET PATH", "https://hooks.example.test/SECRET\tPATH"):
        with pytest.raises(SettingsError) as refused:
            RunSettings(notify_url=url).check_notify()
        assert "SECRET" not in str(refused.value), url


def test_surrounding_whitespace_of_a_url_from_a_secret_is_not_part_of_it() -> None:
    """A Secret written with `echo` ends in a newline: accepted, and the sink's URL is the URL without it."""
    settings = RunSettings(notify_url=URL + "\n")
    settings.check_notify()
    notifier = build_notifier(settings, Metrics())
    assert notifier is not None and notifier.sinks[0].url == URL
    notifier.stop(1)
