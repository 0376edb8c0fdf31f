"""Settings of the daemon (`gitops-kaito run`): flags, then GITOPS_KAITO_* environment variables, then the followed
repository's gitops-kaito.yaml (`daemon:`), then defaults. One frozen dataclass: one name, type and source each.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gitops_kaito.adapters.gitsource import split_credentials
from gitops_kaito.model.gitrefs import branch_problem
from gitops_kaito.model.ownership import DEFAULT_INSTANCE
from gitops_kaito.repo.config import (
    DaemonConfig,
    Scope,
    SettingsError,
    check_instance,
    normalize_scope_path,
    parse_duration,
    parse_listen,
    schedulable,
)

ENV_PREFIX = "GITOPS_KAITO_"
NOTIFY_FORMATS = ("generic", "slack", "teams")
MAX_IN_FLIGHT_LIMIT = 256


def parse_in_flight(raw: str | int) -> int:
    """--max-in-flight (GITOPS_KAITO_MAX_IN_FLIGHT) of `run` and `sync`: writes at once within an apply wave."""
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise SettingsError(f"max-in-flight must be a whole number, not {raw!r}") from None
    if not 1 <= value <= MAX_IN_FLIGHT_LIMIT:
        raise SettingsError(f"max-in-flight must be between 1 and {MAX_IN_FLIGHT_LIMIT}, not {value}")
    return value


def read_secret_file(name: str, what: str) -> bytes:
    """An HMAC key from a file (a mounted Secret): at least 16 bytes, surrounding whitespace dropped."""
    path = Path(name)
    if not path.is_file():
        raise SettingsError(f"{what} secret file {path} does not exist")
    secret = path.read_bytes().strip()
    if len(secret) < 16:
        raise SettingsError(f"{what} secret in {path} is shorter than 16 bytes")
    return secret


@dataclass(frozen=True)
class RunSettings:
    # Never holds credentials: resolve_settings moves a token or password written into the URL to git_token
    # (git_username), so the URL can be printed and logged as it is.
    git_url: str = ""
    branch: str = "main"
    status_branch: str = ""
    interval: str = "60s"
    jitter: str = ""  # "" = a tenth of the interval, at most 5s
    listen: str = "127.0.0.1:8080"
    webhook_secret_file: str = ""
    kubeconfig: str = ""
    context: str = ""
    cache_dir: str = ""
    git_token: str = field(default="", repr=False)
    git_username: str = field(default="", repr=False)  # for the token ("" = x-access-token); e.g. oauth2 (GitLab)
    ssh_key_file: str = ""
    known_hosts_file: str = ""
    lease_name: str = "gitops-kaito-leader"
    lease_namespace: str = "gitops-kaito"
    leader_election: bool = True
    allow_mass_prune: bool = False
    log_format: str = "text"
    instance: str = ""  # "" = gitops-kaito.yaml's instance (else "default")
    paths: tuple[str, ...] = ()  # () = gitops-kaito.yaml's paths; env GITOPS_KAITO_PATHS is comma-separated
    # Notifications on model state changes (notify.py). The URL is a secret (a Slack/Teams URL is its own
    # credential): never in gitops-kaito.yaml, never shown whole (repr, redacted(), logs).
    notify_url: str = field(default="", repr=False)
    notify_format: str = "generic"  # generic | slack | teams
    notify_secret_file: str = ""  # generic: HMAC-SHA256 key for X-Signature
    notify_cluster: str = ""  # a name for this cluster in the messages ("" = the kubeconfig context, if any)
    # Commit statuses on the applied commit (commitstatus.py). The token comes from the environment only.
    commit_status: str = ""  # "" (off) | github | gitlab
    commit_status_api: str = ""  # "" = the public service's API
    commit_status_repo: str = ""  # "" = from git_url
    commit_status_context: str = ""  # "" = gitops-kaito/<instance>
    commit_status_per_model: bool = False
    commit_status_token: str = field(default="", repr=False)
    # The watch-driven loop (adapters/watchcache.py): watch the managed kinds and react to changes in the cluster.
    watch: bool = True
    max_in_flight: str = "16"  # writes at once within an apply wave
    status_commit_interval: str = "10s"  # passes the cluster started commit status at most this often
    # The fields that took their default (neither flag nor environment): only these may come from the repository.
    # Settings built directly (tests, the demo) have none, so a repository never overrides what was passed in.
    defaulted: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def scope(self) -> Scope:
        """The --instance/--path overrides of the followed repository's gitops-kaito.yaml."""
        return Scope(instance=self.instance or None, paths=self.paths or None)

    @property
    def interval_s(self) -> float:
        return schedulable("interval", self.interval)

    @property
    def jitter_s(self) -> float:
        if not self.jitter:
            return min(5.0, self.interval_s / 10)
        return schedulable("jitter", self.jitter)

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    def with_repo(self, daemon: DaemonConfig, instance: str = DEFAULT_INSTANCE) -> RunSettings:
        """These settings with the repository's `daemon:` values for every field no flag or environment set.

        A named instance from the repository also names the Lease, as --instance does, unless a Lease name is set.
        """
        values: dict[str, Any] = {}
        for f in fields(DaemonConfig):
            value = getattr(daemon, f.name)
            if value is not None and f.name in self.defaulted:
                values[f.name] = value
        if "lease_name" in self.defaulted and "lease_name" not in values and "instance" in self.defaulted:
            values.update(instance_lease(instance))
        try:
            out = replace(self, **values)
            out.check()  # the schema checked the form; this also checks the value
        except SettingsError as err:
            raise SettingsError(f"gitops-kaito.yaml daemon: {err}") from None
        return out

    def check(self) -> None:
        """The values that parse lazily parse (SettingsError, with a clear message, before anything starts)."""
        self.interval_s  # noqa: B018
        self.jitter_s  # noqa: B018
        self.listen_address  # noqa: B018
        self.in_flight  # noqa: B018
        self.status_commit_interval_s  # noqa: B018
        for flag, branch in (("--branch", self.branch), ("--status-branch", self.status_branch)):
            problem = branch_problem(branch) if branch or flag == "--branch" else None
            if problem:
                raise SettingsError(f"{flag} {branch!r} is not a branch name git accepts: {problem}")

    @property
    def in_flight(self) -> int:
        return parse_in_flight(self.max_in_flight)

    @property
    def status_commit_interval_s(self) -> float:
        value = parse_duration(self.status_commit_interval)
        if not 0 <= value <= 3600:
            raise SettingsError(f"status-commit-interval must be between 0s and 1h, not {self.status_commit_interval}")
        return value

    def webhook_secret(self) -> bytes | None:
        return read_secret_file(self.webhook_secret_file, "webhook") if self.webhook_secret_file else None

    def notify_secret(self) -> bytes | None:
        """The generic sink's HMAC key (None without --notify-secret-file); checked like the webhook secret."""
        if not self.notify_secret_file:
            return None
        if self.notify_format != "generic":
            raise SettingsError(f"--notify-secret-file signs generic notifications; --notify-format is "
                                f"{self.notify_format}")
        return read_secret_file(self.notify_secret_file, "notify")

    def check_notify(self) -> None:
        """The notification settings make sense (the URL is never part of the message)."""
        if self.notify_format not in NOTIFY_FORMATS:
            raise SettingsError(f"--notify-format takes one of {', '.join(NOTIFY_FORMATS)}, got {self.notify_format!r}")
        url = self.notify_url.strip()  # a Secret written with `echo` ends in a newline
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SettingsError("--notify-url (GITOPS_KAITO_NOTIFY_URL) must be an http(s) URL with a host")
            try:
                parts.port  # noqa: B018 - a port that is not 0-65535 raises here, not in the sender's logs
            except ValueError:
                raise SettingsError("--notify-url (GITOPS_KAITO_NOTIFY_URL) has a port that is not a number "
                                    "from 0 to 65535") from None
            # The sender could not send it, and its error would quote the URL's path (the secret part).
            if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
                raise SettingsError("--notify-url (GITOPS_KAITO_NOTIFY_URL) contains spaces or control "
                                    "characters")
        self.notify_secret()

    def redacted(self) -> dict[str, Any]:
        """For logs: the token never appears, nor more of the notification URL than scheme://host."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "defaulted"}
        for secret in ("git_token", "git_username", "commit_status_token"):
            if out[secret]:
                out[secret] = "***"
        if out["notify_url"]:
            parts = urlsplit(out["notify_url"])
            out["notify_url"] = f"{parts.scheme}://{parts.hostname or '?'}/***"
        return out


def resolve_settings(flags: Mapping[str, Any], env: Mapping[str, str] | None = None) -> RunSettings:
    """Merge flags (non-None values win) over GITOPS_KAITO_<NAME> environment variables over defaults."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(RunSettings):
        if f.name == "defaulted":
            continue
        flag = flags.get(f.name)
        if flag is not None:
            values[f.name] = flag
            continue
        raw = env.get(ENV_PREFIX + f.name.upper())
        if raw is None:
            continue
        if f.type in ("bool", bool):
            values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
        elif f.name == "paths":
            values[f.name] = tuple(p.strip() for p in raw.split(",") if p.strip())
        else:
            values[f.name] = raw
    if values.get("git_url"):
        # An ssh password is dropped with the rest: ssh runs in batch mode and could never send it.
        values["git_url"], url_auth = split_credentials(str(values["git_url"]).strip())
        if url_auth is not None:
            token = values.get("git_token") or url_auth.token or ""
            user = url_auth.username if url_auth.username != "x-access-token" else ""
            if not token and user:  # https://<token>@host/...: the form GitHub documents for a token alone
                token, user = user, ""
            values["git_token"] = token
            if user:
                values.setdefault("git_username", user)
    try:
        if values.get("instance"):
            check_instance(values["instance"])
        values["paths"] = tuple(dict.fromkeys(normalize_scope_path(p) for p in values.get("paths") or ()))
    except ValueError as err:
        raise SettingsError(str(err)) from None
    if "lease_name" not in values:
        values.update(instance_lease(values.get("instance")))
    defaulted = frozenset(f.name for f in fields(RunSettings) if f.name not in values and f.name != "defaulted")
    settings = RunSettings(**values, defaulted=defaulted)
    settings.check()
    return settings


def instance_lease(instance: str | None) -> dict[str, str]:
    """The lease_name a named instance implies when none is set ({} for the default instance).

    Instances sharing a Lease would elect one leader among them all: only one of them would ever sync.
    """
    if instance in (None, "", DEFAULT_INSTANCE):
        return {}
    return {"lease_name": f"{RunSettings.lease_name}-{instance}"}
