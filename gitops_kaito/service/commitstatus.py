"""Commit statuses on the applied commit (GitHub commit statuses API, GitLab commit status API): pending while the
revision's models progress, success when all are Ready, failure when one is Failed, Blocked or Invalid.

Level-based, not event-based: after every pass the wanted state of each context is compared with what was last
posted, and only a change is sent, on notify.py's Sender (its own thread, bounded queue, retries with backoff).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from gitops_kaito.adapters.gitsource import parse_revision
from gitops_kaito.core.status import ModelReport, scrub
from gitops_kaito.model.states import SETTLED, TROUBLE, ModelState
from gitops_kaito.reconcile.gitsync import pass_problems
from gitops_kaito.repo.config import SettingsError
from gitops_kaito.service.notify import (
    Answer,
    LeaderTerms,
    Request,
    Sender,
    SendRetry,
    Sink,
    Verdict,
    http_post,
    retryable,
)

if TYPE_CHECKING:
    from gitops_kaito.reconcile.gitsync import GitPassResult
    from gitops_kaito.service.metrics import Metrics
    from gitops_kaito.service.settings import RunSettings

log = logging.getLogger(__name__)

GITHUB = "github"
GITLAB = "gitlab"
PROVIDERS = (GITHUB, GITLAB)
DEFAULT_API = {GITHUB: "https://api.github.com", GITLAB: "https://gitlab.com/api/v4"}
# GitHub cuts nothing and refuses a description over 140 characters; GitLab keeps 255.
DESCRIPTION_LIMIT = {GITHUB: 140, GITLAB: 255}

PENDING, SUCCESS, FAILURE, SUPERSEDED = "pending", "success", "failure", "superseded"
_WIRE_STATE = {GITHUB: {PENDING: "pending", SUCCESS: "success", FAILURE: "failure", SUPERSEDED: "error"},
               GITLAB: {PENDING: "pending", SUCCESS: "success", FAILURE: "failed", SUPERSEDED: "canceled"}}

# Results counted in gitops_kaito_commit_statuses{result} that are retried at the next pass.
RETRY_LATER = frozenset({"rate_limited", "server_error", "unreachable", "dropped"})
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?\Z")


# -- where ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusTarget:
    """One repository on one forge: which API, which repository (GitHub owner/name, GitLab project path), the
    context (per instance, so instances or clusters sharing a repository never overwrite each other's status)."""

    provider: str
    repo: str
    api: str = ""
    context: str = ""  # "" = gitops-kaito/<instance>
    per_model: bool = False

    @property
    def api_base(self) -> str:
        return (self.api or DEFAULT_API[self.provider]).rstrip("/")

    @property
    def web_base(self) -> str:
        """The forge's web address, from its API's: api.github.com -> github.com, <host>/api/v3|v4 -> <host>."""
        parts = urlsplit(self.api_base)
        host = parts.netloc
        if host == "api.github.com":
            return "https://github.com"
        path = re.sub(r"/api/v\d+\Z", "", parts.path.rstrip("/"))
        return f"{parts.scheme}://{host}{path}"

    def context_for(self, instance: str) -> str:
        return self.context or f"gitops-kaito/{instance}"

    def status_url(self, sha: str) -> str:
        if self.provider == GITHUB:
            return f"{self.api_base}/repos/{self.repo}/statuses/{sha}"
        return f"{self.api_base}/projects/{quote(self.repo, safe='')}/statuses/{sha}"

    def link(self, ref: str, status_dir: str) -> str:
        """STATUS.md as of `ref` (the status commit that reported this state, else the status branch)."""
        where = "blob" if self.provider == GITHUB else "-/blob"
        return f"{self.web_base}/{self.repo}/{where}/{ref}/{status_dir.strip('/') or 'status'}/STATUS.md"


def derive_repo(git_url: str) -> str:
    """owner/name (GitLab: group/subgroup/name) from the followed repository's URL: https://host/o/n(.git),
    ssh://git@host/o/n.git or git@host:o/n.git."""
    url = git_url.strip()
    scp = re.match(r"^[\w.-]+@[\w.-]+:(?!//)(.+)\Z", url)
    if scp:
        path = scp.group(1)
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ssh", "git") or not parts.hostname:
            raise SettingsError(f"cannot tell the repository of {parts.scheme or url}:// URLs for commit statuses: "
                                "set --commit-status-repo OWNER/NAME (GITOPS_KAITO_COMMIT_STATUS_REPO)")
        path = parts.path
    path = path.strip("/").removesuffix(".git").strip("/")
    if path.count("/") < 1 or any(not p for p in path.split("/")):
        raise SettingsError(f"cannot tell OWNER/NAME from the Git URL's path {path!r}: set --commit-status-repo")
    return path


# -- what -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommitState:
    """One status as wanted on one commit: state is pending | success | failure | superseded."""

    sha: str
    context: str
    state: str
    description: str
    target_url: str = ""


def _model(r: ModelReport) -> str:
    return f"{r.namespace}/{r.name}"


def _why(r: ModelReport) -> str:
    reason = r.reason if r.reason and r.reason not in ("Blocked", "InvalidRequest") else ""
    text = ": ".join(p for p in (reason, r.message or r.last_error or "") if p)
    return scrub(text)


def revision_state(reports: Sequence[ModelReport], problems: Sequence[str] = ()) -> tuple[str, str]:
    """(state, one-line description) of a revision from its pass's model reports and the problems no model row
    shows (a broken gitops-kaito.yaml, the prune guard)."""
    total = len(reports)
    ordered = sorted(reports, key=lambda r: r.model_id)
    troubled = [r for r in ordered if r.state in TROUBLE]
    if troubled:
        first = troubled[0]
        head = f"{len(troubled)} of {total} models failing: " if total > 1 else ""
        return FAILURE, f"{head}{_model(first)} {first.state}: {_why(first) or 'no reason given'}"
    if problems:
        return FAILURE, f"not applied: {scrub(problems[0])}"
    progressing = [r for r in ordered if r.state not in SETTLED]
    ready = sum(1 for r in ordered if r.state == ModelState.READY)
    suspended = total - ready - len(progressing)
    tail = f", {suspended} suspended" if suspended else ""
    if progressing:
        names = ", ".join(f"{_model(r)} ({r.state})" for r in progressing[:3])
        more = f" and {len(progressing) - 3} more" if len(progressing) > 3 else ""
        return PENDING, f"{ready} of {total} models Ready{tail}; waiting for {names}{more}"
    if total == 0:
        return SUCCESS, "no models in the repository"
    return SUCCESS, f"{ready} model{'s' if ready != 1 else ''} Ready{tail}"


def model_state(report: ModelReport) -> tuple[str, str]:
    """(state, description) of one model's own status (`--commit-status-per-model`)."""
    if report.state in TROUBLE:
        return FAILURE, f"{report.state}: {_why(report) or 'no reason given'}"
    if report.state in SETTLED:
        return SUCCESS, str(report.state)
    return PENDING, f"{report.state}: {_why(report)}" if _why(report) else str(report.state)


def wanted_states(target: StatusTarget, sha: str, instance: str, reports: Sequence[ModelReport],
                  problems: Sequence[str] = (), link: str = "") -> list[CommitState]:
    context = target.context_for(instance)
    state, description = revision_state(reports, problems)
    out = [CommitState(sha, context, state, description, link)]
    if target.per_model:
        for r in sorted(reports, key=lambda r: r.model_id):
            state, description = model_state(r)
            out.append(CommitState(sha, f"{context}/{_model(r)}", state, description, link))
    return out


def _cut(text: str, limit: int) -> str:
    line = " ".join(text.split())  # one line: the forges show the description as a single line
    return line if len(line) <= limit else line[:limit - 1] + "…"


# -- on the wire ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusRequest(Request):
    """A notify.Request that knows which commit status it carries (for the log line and the memory)."""

    repo: str = ""
    sha: str = ""
    context: str = ""
    state: str = ""


def request_for(target: StatusTarget, token: str, wanted: CommitState) -> StatusRequest:
    state = _WIRE_STATE[target.provider][wanted.state]
    description = _cut(wanted.description, DESCRIPTION_LIMIT[target.provider])
    headers = [("Content-Type", "application/json"), ("User-Agent", "gitops-kaito")]
    if target.provider == GITHUB:
        body = {"state": state, "target_url": wanted.target_url or None, "description": description,
                "context": wanted.context}
        headers += [("Authorization", f"Bearer {token}"), ("Accept", "application/vnd.github+json"),
                    ("X-GitHub-Api-Version", "2022-11-28")]
    else:
        body = {"state": state, "name": wanted.context, "target_url": wanted.target_url or None,
                "description": description}
        headers += [("PRIVATE-TOKEN", token)]
    payload = {k: v for k, v in body.items() if v is not None}
    return StatusRequest(Sink(target.status_url(wanted.sha), target.provider), json.dumps(payload).encode(),
                         tuple(headers), 1, target.repo, wanted.sha, wanted.context, wanted.state)


def _rate_limited(answer: Answer) -> bool:
    return answer.status == 429 or (answer.status == 403 and (
        answer.header("x-ratelimit-remaining") == "0" or answer.retry_after is not None))


def verdict(answer: Answer) -> Verdict:
    """What a forge's answer means; each kind of refusal has its own result (and metric label)."""
    status = answer.status
    if 200 <= status < 300:
        return Verdict("sent", True)
    if status == 400 and "cannot transition status" in answer.detail.lower():
        # GitLab refuses pending -> pending (and running -> running): the commit already shows this state.
        return Verdict("unchanged", True)
    if _rate_limited(answer):
        return Verdict("rate_limited", False, True)
    if status == 401:
        return Verdict("unauthorized", False)
    if status == 403:
        return Verdict("forbidden", False)
    if status == 404:
        return Verdict("not_found", False)
    if status == 0:
        return Verdict("unreachable", False, True)
    if status >= 500:
        return Verdict("server_error", False, retryable(status))
    return Verdict("invalid", False)  # 422 (sha not in that repository, 1000 statuses per context), 400, 3xx


_ADVICE = {
    "unauthorized": "the token in GITOPS_KAITO_COMMIT_STATUS_TOKEN was refused (revoked or expired?); statuses are "
                    "not set until it is replaced and gitops-kaito restarted",
    "forbidden": "the token may not set commit statuses (GitHub: repo:status or fine-grained 'Commit statuses: "
                 "write'; GitLab: api scope and at least the Developer role)",
    "not_found": "the repository is not there or the token cannot see it: check --commit-status-repo and "
                 "--commit-status-api",
    "invalid": "the forge refused the status (is the commit in that repository?)",
    "rate_limited": "rate limited; tried again at the next change",
    "server_error": "the forge failed; tried again at the next pass",
    "unreachable": "no answer; tried again at the next pass",
}


def describe(request: Request, answer: Answer, attempts: int) -> str:
    """The log line of a status given up on: where (scheme://host, repository, commit), what, why, what to do."""
    what = f"{request.sink.where} {request.sink.name} repository"
    if isinstance(request, StatusRequest):
        what = (f"{request.sink.name} commit status {request.context}={request.state} on "
                f"{request.repo}@{request.sha[:12]} at {request.sink.where}")
    result = verdict(answer).result
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return (f"{what} not set{tries}: {answer.detail or f'HTTP {answer.status}'}: "
            f"{_ADVICE.get(result, 'not set')}")


def rate_limit_post(post: Callable[[Request, float], Answer] = http_post,
                    clock: Callable[[], float] = time.time) -> Callable[[Request, float], Answer]:
    """`post` that turns GitHub's X-RateLimit-Reset (an epoch second) into the Retry-After the sender honours."""
    def send(request: Request, timeout_s: float) -> Answer:
        answer = post(request, timeout_s)
        reset = answer.header("x-ratelimit-reset")
        if _rate_limited(answer) and answer.retry_after is None and reset and reset.isdigit():
            answer = replace(answer, retry_after=str(max(0, int(reset) - int(clock()))))
        return answer
    return send


# -- the daemon's side ------------------------------------------------------------------------------------------
@dataclass
class _Memory:
    posted: dict[tuple[str, str], str] = field(default_factory=dict)  # (sha, context) -> state last submitted
    sha: str = ""  # the commit the statuses are about now


class CommitStatusReporter(LeaderTerms):
    """After every pass: the statuses the applied commit should show, and the changes among them sent.

    observe() never raises into the pass and never waits for the forge. What was submitted is remembered; a status
    given up on for a passing reason (rate limit, 5xx, no answer, queue full) is forgotten, so the next pass sends
    it again; a refusal (401/403/404/422) is not, so a revoked token costs one log line per change, not per pass.
    """

    def __init__(self, target: StatusTarget, token: str, *, metrics: Metrics | None = None,
                 policy: SendRetry | None = None, sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] = time.time, post: Callable[[Request, float], Answer] = http_post,
                 queue_size: int = 1000) -> None:
        super().__init__()
        self.target = target
        self._token = token
        self.metrics = metrics
        self.sender = Sender(self._finished, policy=policy, queue_size=queue_size, post=rate_limit_post(post, clock),
                             sleep=sleep, clock=clock, verdict=verdict, on_answer=self._answered, describe=describe,
                             noun="commit status", thread_name="commit-status-sender")
        self._memory = _Memory()

    def __repr__(self) -> str:  # the token never shows
        return f"CommitStatusReporter({self.target!r})"

    def _drop_memory(self) -> None:
        self._memory = _Memory()  # the new leader posts meanwhile; leading again, everything is compared afresh

    def observe(self, done: GitPassResult, instance: str, generation: int | None = None) -> list[CommitState]:
        """The statuses this pass submitted (for tests and logs)."""
        result = done.sync
        if result.dry_run or result.abandoned:
            return []  # a partial pass says nothing reliable about the revision
        _ref, sha = parse_revision(done.revision)
        if not _SHA.match(sha):
            return []
        status_dir = done.config.status_dir if done.config is not None else "status"
        wb = done.writeback
        link_ref = (wb.sha if wb is not None and wb.committed and wb.sha else wb.branch if wb is not None
                    else done.checkout.ref or sha)
        link = self.target.link(str(link_ref), status_dir)
        return self.report(wanted_states(self.target, sha, instance, done.reports, pass_problems(result), link),
                           generation)

    def report(self, wanted: Sequence[CommitState], generation: int | None = None) -> list[CommitState]:
        """Submit what differs from what was last submitted; a commit left pending is marked superseded."""
        if not wanted:
            return []
        sha = wanted[0].sha
        send: list[CommitState] = []
        with self._lock:
            if self._outlived(generation):
                return []
            memory = self._memory
            if memory.sha and memory.sha != sha:
                for (old, context), state in sorted(memory.posted.items()):
                    if old == memory.sha and state == PENDING:
                        send.append(CommitState(old, context, SUPERSEDED,
                                                f"superseded by {sha[:12]} before its models settled"))
                memory.posted = {k: v for k, v in memory.posted.items() if k[0] == sha}
            memory.sha = sha
            for w in wanted:
                if memory.posted.get((w.sha, w.context)) != w.state:
                    memory.posted[(w.sha, w.context)] = w.state
                    send.append(w)
        if send:
            self.sender.submit(request_for(self.target, self._token, w) for w in send)
        return send

    def _answered(self, request: Request, answer: Answer) -> None:
        if self.metrics is not None:
            self.metrics.commit_status_requests.labels(provider=request.sink.name, code=str(answer.status)).inc()

    def _finished(self, request: Request, result: str) -> None:
        if result == "failed":  # the sender's own word for a crash in delivery
            result = "unreachable"
        if self.metrics is not None:
            self.metrics.commit_statuses.labels(provider=request.sink.name, result=result).inc()
        if result in RETRY_LATER and isinstance(request, StatusRequest):
            with self._lock:
                key = (request.sha, request.context)
                if self._memory.posted.get(key) == request.state:
                    del self._memory.posted[key]

    def wait_idle(self, timeout_s: float) -> bool:
        return self.sender.wait_idle(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        self.sender.stop(timeout_s)


def build_reporter(settings: RunSettings, metrics: Metrics | None = None) -> CommitStatusReporter | None:
    """The reporter `run --commit-status` asks for (None without it), its settings checked (SettingsError says
    which and why)."""
    provider = settings.commit_status
    if not provider:
        return None
    if provider not in PROVIDERS:
        raise SettingsError(f"--commit-status takes one of {', '.join(PROVIDERS)}, got {provider!r}")
    token = settings.commit_status_token.strip()  # a Secret written with `echo` ends in a newline
    if not token:
        raise SettingsError("--commit-status needs a token in GITOPS_KAITO_COMMIT_STATUS_TOKEN (from a Secret; "
                            "never a flag or the repository)")
    api = settings.commit_status_api.strip()
    if api:
        parts = urlsplit(api)
        if parts.username is not None or parts.password is not None:
            # Never quoted: what is before the @ is a credential, and the start line would log the URL.
            raise SettingsError("--commit-status-api must not carry credentials (user:password@): the token "
                                "comes from GITOPS_KAITO_COMMIT_STATUS_TOKEN")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"--commit-status-api must be an http(s) URL with a host, got {api!r}")
    repo = settings.commit_status_repo.strip().strip("/") or derive_repo(settings.git_url)
    if repo.count("/") < 1 or any(not p or p in (".", "..") for p in repo.split("/")):
        raise SettingsError(f"--commit-status-repo takes OWNER/NAME (GitLab: GROUP/.../NAME), got {repo!r}")
    if provider == GITHUB and repo.count("/") != 1:
        raise SettingsError(f"--commit-status-repo for GitHub takes OWNER/NAME, got {repo!r}")
    target = StatusTarget(provider, repo, api, settings.commit_status_context.strip(),
                          settings.commit_status_per_model)
    return CommitStatusReporter(target, token, metrics=metrics)


__all__ = ["CommitState", "CommitStatusReporter", "StatusTarget", "build_reporter", "derive_repo", "revision_state"]
