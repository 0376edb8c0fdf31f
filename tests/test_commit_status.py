"""Commit statuses: what a revision's status says, where it goes, and how each answer of GitHub's and GitLab's APIs
is handled and counted (against loopback servers that speak each API, tests/forgefixtures.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_kaito.cli import main
from gitops_kaito.core.status import ModelReport
from gitops_kaito.model.states import ModelState
from gitops_kaito.service.commitstatus import (
    FAILURE,
    PENDING,
    SUCCESS,
    CommitState,
    CommitStatusReporter,
    StatusTarget,
    build_reporter,
    derive_repo,
    request_for,
    revision_state,
    wanted_states,
)
from gitops_kaito.service.metrics import Metrics
from gitops_kaito.service.notify import SendRetry
from gitops_kaito.service.settings import RunSettings, SettingsError, resolve_settings
from tests.forgefixtures import Forge

SHA_A = "a" * 40
SHA_B = "b" * 40
TOKEN = "forge-token-0123456789"


def report(name: str, state: ModelState, reason: str = "", message: str = "", ns: str = "ml") -> ModelReport:
    return ModelReport(f"{ns}.{name}", ns, name, state, reason, message)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def reporter(forge: Forge, *, per_model: bool = False, sleeps: Sleeps | None = None,
             clock: Any = None) -> tuple[CommitStatusReporter, Metrics]:
    metrics = Metrics()
    target = StatusTarget(forge.provider, forge.repo, forge.api, per_model=per_model)
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    rep = CommitStatusReporter(target, forge.token, metrics=metrics, sleep=sleeps or Sleeps(),
                               policy=SendRetry(attempts=3, timeout_s=5), **extra)
    return rep, metrics


def count(metrics: Metrics, provider: str, result: str) -> float:
    return metrics.registry.get_sample_value("gitops_kaito_commit_statuses_total",
                                             {"provider": provider, "result": result}) or 0.0


def answers(metrics: Metrics, provider: str, code: int) -> float:
    return metrics.registry.get_sample_value("gitops_kaito_commit_status_requests_total",
                                             {"provider": provider, "code": str(code)}) or 0.0


# -- what a revision's status says ------------------------------------------------------------------------------
def test_revision_state_from_the_models() -> None:
    ready, prov = report("a", ModelState.READY), report("b", ModelState.PROVISIONING, "LaunchPending", "node")
    failed = report("c", ModelState.FAILED, "LaunchFailed", "quota exceeded for Standard_NC24ads_A100_v4")
    assert revision_state([ready, prov]) == (PENDING, "1 of 2 models Ready; waiting for ml/b (Provisioning)")
    assert revision_state([ready]) == (SUCCESS, "1 model Ready")
    assert revision_state([ready, report("s", ModelState.SUSPENDED)]) == (SUCCESS, "1 model Ready, 1 suspended")
    state, text = revision_state([ready, prov, failed])
    assert state == FAILURE
    assert text == "1 of 3 models failing: ml/c Failed: LaunchFailed: quota exceeded for Standard_NC24ads_A100_v4"
    invalid = report("d", ModelState.INVALID, "InvalidRequest", "models/ml/d.yaml:6: unknown model 'x'")
    assert revision_state([invalid]) == (FAILURE, "ml/d Invalid: models/ml/d.yaml:6: unknown model 'x'")
    assert revision_state([ready], ["gitops-kaito.yaml:3: unknown field 'x'"])[0] == FAILURE
    assert revision_state([]) == (SUCCESS, "no models in the repository")


def test_descriptions_are_one_short_line_without_credentials() -> None:
    leak = report("x", ModelState.FAILED, "ApplyFailed",
                  "401 from https://user:hunter2secret@registry.test: Authorization: Bearer abcDEF123456ghiJKL\nmore")
    wanted = wanted_states(StatusTarget("github", "o/n"), SHA_A, "default", [leak] * 1, link="https://x/STATUS.md")
    body = json.loads(request_for(StatusTarget("github", "o/n"), TOKEN, wanted[0]).body)
    assert "hunter2secret" not in body["description"] and "abcDEF123456ghiJKL" not in body["description"]
    assert "\n" not in body["description"] and len(body["description"]) <= 140
    long = [report(f"m{i}", ModelState.FAILED, "R", "x" * 400) for i in range(3)]
    gitlab = request_for(StatusTarget("gitlab", "g/s/n"), TOKEN, wanted_states(
        StatusTarget("gitlab", "g/s/n"), SHA_A, "default", long)[0])
    assert len(json.loads(gitlab.body)["description"]) == 255
    assert TOKEN not in repr(gitlab) and TOKEN not in repr(build_reporter(RunSettings(
        git_url="https://github.com/o/n.git", commit_status="github", commit_status_token=TOKEN)))


def test_per_model_contexts() -> None:
    target = StatusTarget("github", "o/n", context="prod/gitops-kaito", per_model=True)
    wanted = wanted_states(target, SHA_A, "default", [report("b", ModelState.PENDING),
                                                      report("a", ModelState.READY)])
    assert [(w.context, w.state) for w in wanted] == [
        ("prod/gitops-kaito", PENDING), ("prod/gitops-kaito/ml/a", SUCCESS), ("prod/gitops-kaito/ml/b", PENDING)]
    assert StatusTarget("github", "o/n").context_for("team-a") == "gitops-kaito/team-a"


def test_repository_from_the_git_url_and_links() -> None:
    assert derive_repo("https://github.com/org/models.git") == "org/models"
    assert derive_repo("git@github.com:org/models.git") == "org/models"
    assert derive_repo("ssh://git@gitlab.example.com:2222/group/sub/models.git") == "group/sub/models"
    assert derive_repo("https://x-access-token:tok@github.com/org/models") == "org/models"
    for bad in ("file:///srv/models.git", "https://github.com/models"):
        with pytest.raises(SettingsError, match="commit-status-repo"):
            derive_repo(bad)
    gh = StatusTarget("github", "org/models")
    assert gh.status_url(SHA_A) == f"https://api.github.com/repos/org/models/statuses/{SHA_A}"
    assert gh.link(SHA_B, "status") == f"https://github.com/org/models/blob/{SHA_B}/status/STATUS.md"
    ghe = StatusTarget("github", "org/models", "https://ghe.example.com/api/v3/")
    assert ghe.link("main", "status/team-a") == "https://ghe.example.com/org/models/blob/main/status/team-a/STATUS.md"
    gl = StatusTarget("gitlab", "group/sub/models", "https://gitlab.example.com/api/v4")
    assert gl.status_url(SHA_A) == f"https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fmodels/statuses/{SHA_A}"
    assert gl.link(SHA_B, "status") == f"https://gitlab.example.com/group/sub/models/-/blob/{SHA_B}/status/STATUS.md"
    assert StatusTarget("gitlab", "g/n").status_url(SHA_A).startswith("https://gitlab.com/api/v4/projects/g%2Fn/")


# -- on the wire ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_pending_then_success_once_each(forge_factory: Any, provider: str) -> None:
    forge: Forge = forge_factory(provider, "group/models" if provider == "github" else "group/sub/models")
    rep, metrics = reporter(forge)
    link = f"{rep.target.web_base}/{forge.repo}/blob/{SHA_B}/status/STATUS.md"
    progressing = [report("a", ModelState.PROVISIONING), report("b", ModelState.READY)]
    assert [w.state for w in rep.report(wanted_states(rep.target, SHA_A, "default", progressing, link=link))] == \
        [PENDING]
    assert rep.report(wanted_states(rep.target, SHA_A, "default", progressing, link=link)) == [], \
        "an unchanged state is not sent again"
    done = [report("a", ModelState.READY), report("b", ModelState.READY)]
    rep.report(wanted_states(rep.target, SHA_A, "default", done, link=link))
    assert rep.wait_idle(10)
    assert forge.states(SHA_A, "gitops-kaito/default") == ["pending", "success"]
    last = forge.last(SHA_A, "gitops-kaito/default")
    assert last is not None and last["description"] == "2 models Ready" and last["target_url"] == link
    assert count(metrics, provider, "sent") == 2 and answers(metrics, provider, 201) == 2
    rep.stop()


def test_gitlab_pending_again_after_a_restart_is_unchanged_not_an_error(
        forge_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    forge: Forge = forge_factory("gitlab", "group/models")
    rep, metrics = reporter(forge)
    pending = wanted_states(rep.target, SHA_A, "default", [report("a", ModelState.PENDING)])
    rep.report(pending)
    rep.forget()  # as after a restart or a leadership change: nothing remembered, so pending is posted again
    rep.report(pending)
    assert rep.wait_idle(10)
    assert forge.states(SHA_A, "gitops-kaito/default") == ["pending"]
    assert (count(metrics, "gitlab", "sent"), count(metrics, "gitlab", "unchanged")) == (1, 1)
    assert answers(metrics, "gitlab", 400) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    rep.report(wanted_states(rep.target, SHA_A, "default", [report("a", ModelState.FAILED, "X", "boom")]))
    assert rep.wait_idle(10) and forge.states(SHA_A, "gitops-kaito/default") == ["pending", "failed"]
    rep.stop()


@pytest.mark.parametrize("provider,wire", [("github", "error"), ("gitlab", "canceled")])
def test_a_commit_left_pending_is_marked_superseded(forge_factory: Any, provider: str, wire: str) -> None:
    forge: Forge = forge_factory(provider)
    rep, _ = reporter(forge)
    rep.report(wanted_states(rep.target, SHA_A, "default", [report("a", ModelState.PROVISIONING)]))
    rep.report(wanted_states(rep.target, SHA_B, "default", [report("a", ModelState.READY)]))
    assert rep.wait_idle(10)
    assert forge.states(SHA_A, "gitops-kaito/default") == ["pending", wire]
    last = forge.last(SHA_A, "gitops-kaito/default")
    assert last is not None and last["description"] == f"superseded by {SHA_B[:12]} before its models settled"
    assert forge.states(SHA_B, "gitops-kaito/default") == ["success"]
    rep.stop()


@pytest.mark.parametrize("status,result,advice", [
    (401, "unauthorized", "revoked or expired"),
    (403, "forbidden", "may not set commit statuses"),
    (404, "not_found", "check --commit-status-repo"),
    (422, "invalid", "is the commit in that repository"),
])
def test_each_refusal_is_counted_logged_once_and_not_retried(
        forge_factory: Any, caplog: pytest.LogCaptureFixture, status: int, result: str, advice: str) -> None:
    forge: Forge = forge_factory("github")
    forge.script = [(status, {}, "Bad credentials" if status == 401 else "refused")]
    sleeps = Sleeps()
    rep, metrics = reporter(forge, sleeps=sleeps)
    wanted = wanted_states(rep.target, SHA_A, "default", [report("a", ModelState.PENDING)])
    rep.report(wanted)
    assert rep.wait_idle(10)
    assert len(forge.requests) == 1 and sleeps.waits == [], "a refusal is not retried"
    assert count(metrics, "github", result) == 1 and answers(metrics, "github", status) == 1
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"HTTP {status}" in line and advice in line and f"org/models@{SHA_A[:12]}" in line
    assert TOKEN not in line
    assert rep.report(wanted) == [], "the same state is not tried again at every pass"
    rep.stop()


def test_rate_limits_and_server_errors_are_retried_with_backoff(forge_factory: Any) -> None:
    forge: Forge = forge_factory("github")
    now = 1_800_000_000.0
    forge.script = [(429, {"Retry-After": "7"}, "slow down"),
                    (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(now) + 12)}, "rate limit"),
                    ]
    sleeps = Sleeps()
    rep, metrics = reporter(forge, sleeps=sleeps, clock=lambda: now)
    rep.report(wanted_states(rep.target, SHA_A, "default", [report("a", ModelState.READY)]))
    assert rep.wait_idle(10)
    assert sleeps.waits == [7.0, 12.0]
    assert forge.states(SHA_A, "gitops-kaito/default") == ["success"]
    assert (answers(metrics, "github", 429), answers(metrics, "github", 403), count(metrics, "github", "sent")) == \
        (1, 1, 1)
    rep.stop()


def test_a_status_given_up_on_for_a_passing_reason_is_sent_again_at_the_next_pass(forge_factory: Any) -> None:
    forge: Forge = forge_factory("gitlab")
    forge.script = [(503, {}, "down")] * 3
    rep, metrics = reporter(forge)
    wanted = wanted_states(rep.target, SHA_A, "default", [report("a", ModelState.READY)])
    rep.report(wanted)
    assert rep.wait_idle(10)
    assert count(metrics, "gitlab", "server_error") == 1 and answers(metrics, "gitlab", 503) == 3
    assert [w.state for w in rep.report(wanted)] == [SUCCESS], "forgotten, so the next pass sends it again"
    assert rep.wait_idle(10) and forge.states(SHA_A, "gitops-kaito/default") == ["success"]
    rep.stop()


def test_nothing_listening_is_counted_as_unreachable() -> None:
    metrics = Metrics()
    rep = CommitStatusReporter(StatusTarget("github", "o/n", "http://127.0.0.1:9/api/v3"), TOKEN, metrics=metrics,
                               sleep=Sleeps(), policy=SendRetry(attempts=2, timeout_s=2))
    rep.report([CommitState(SHA_A, "gitops-kaito/default", PENDING, "x")])
    assert rep.wait_idle(10)
    assert count(metrics, "github", "unreachable") == 1 and answers(metrics, "github", 0) == 2
    rep.stop()


# -- settings ---------------------------------------------------------------------------------------------------
def test_settings_from_the_environment_and_the_token_from_nowhere_else() -> None:
    env = {"GITOPS_KAITO_COMMIT_STATUS": "gitlab", "GITOPS_KAITO_COMMIT_STATUS_API": "https://gl.test/api/v4",
           "GITOPS_KAITO_COMMIT_STATUS_REPO": "g/s/n", "GITOPS_KAITO_COMMIT_STATUS_PER_MODEL": "true",
           "GITOPS_KAITO_COMMIT_STATUS_CONTEXT": "prod", "GITOPS_KAITO_COMMIT_STATUS_TOKEN": TOKEN + "\n",
           "GITOPS_KAITO_GIT_URL": "file:///srv/models.git"}
    s = resolve_settings({}, env)
    assert s.redacted()["commit_status_token"] == "***" and TOKEN not in repr(s)
    rep = build_reporter(s)
    assert rep is not None
    assert rep.target == StatusTarget("gitlab", "g/s/n", "https://gl.test/api/v4", "prod", True)
    assert build_reporter(resolve_settings({}, {})) is None
    with pytest.raises(SettingsError, match="GITOPS_KAITO_COMMIT_STATUS_TOKEN"):
        build_reporter(RunSettings(git_url="https://github.com/o/n", commit_status="github"))
    with pytest.raises(SettingsError, match="OWNER/NAME"):
        build_reporter(RunSettings(git_url="https://github.com/o/n", commit_status="github",
                                        commit_status_token=TOKEN, commit_status_repo="g/s/n"))
    with pytest.raises(SettingsError, match="http\\(s\\) URL"):
        build_reporter(RunSettings(git_url="https://github.com/o/n", commit_status="github",
                                        commit_status_token=TOKEN, commit_status_api="ftp://x"))


def test_an_api_url_with_credentials_is_refused_without_showing_them() -> None:
    # The token comes from GITOPS_KAITO_COMMIT_STATUS_TOKEN only; a password in the URL would be logged at start.
    for api in ("https://user:hunter2pass@ghe.test/api/v3", "ftp://user:hunter2pass@ghe.test/"):
        with pytest.raises(SettingsError, match="--commit-status-api") as err:
            build_reporter(RunSettings(git_url="https://github.com/o/n", commit_status="github",
                                            commit_status_token=TOKEN, commit_status_api=api))
        assert "hunter2pass" not in str(err.value)


def test_run_refuses_unusable_commit_status_settings(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITOPS_KAITO_COMMIT_STATUS_TOKEN", raising=False)
    assert main(["run", "--git-url", "https://github.com/o/n.git", "--commit-status", "github"]) == 2
    assert "GITOPS_KAITO_COMMIT_STATUS_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("GITOPS_KAITO_COMMIT_STATUS_TOKEN", TOKEN)
    assert main(["run", "--git-url", "file:///srv/models.git", "--commit-status", "gitlab"]) == 2
    assert "--commit-status-repo" in capsys.readouterr().err


def test_deployment_takes_the_token_from_an_optional_secret_only() -> None:
    deploy = Path(__file__).resolve().parent.parent / "deploy"
    (container,) = yaml.safe_load((deploy / "deployment.yaml").read_text())["spec"]["template"]["spec"]["containers"]
    ref = {e["name"]: e for e in container["env"]}["GITOPS_KAITO_COMMIT_STATUS_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"], ref["optional"]) == ("gitops-kaito-commit-status", "token", True)
    active = [line for line in (deploy / "config.env").read_text().splitlines() if not line.startswith("#")]
    assert not any(line.startswith("GITOPS_KAITO_COMMIT_STATUS_TOKEN") for line in active), "the token is a secret"


def test_a_pass_that_outlived_its_leadership_posts_nothing(forge_factory: Any) -> None:
    forge: Forge = forge_factory("github")
    rep, _ = reporter(forge)
    generation = rep.generation  # taken when the pass starts
    rep.forget()  # leadership lost while it ran: the new leader reports now
    wanted = wanted_states(rep.target, SHA_A, "default", [report("a", ModelState.READY)])
    assert rep.report(wanted, generation) == []
    assert [w.state for w in rep.report(wanted, rep.generation)] == [SUCCESS], "the next term reports afresh"
    assert rep.wait_idle(10) and forge.states(SHA_A, "gitops-kaito/default") == ["success"]
    rep.stop()
