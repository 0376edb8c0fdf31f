"""RepoConfig: a model repository's optional gitops-kaito.yaml (defaults, clouds, prune/replace policy, status, prices).

Validated against schemas/config.schema.json; every error names the file and line. A missing file means defaults.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from gitops_kaito.model.gitrefs import branch_problem
from gitops_kaito.model.ownership import DEFAULT_INSTANCE, DRIFT_CORRECT, is_dns_label
from gitops_kaito.model.resources import data_path
from gitops_kaito.repo import schemas
from gitops_kaito.repo.catalog import Catalog, load_catalog
from gitops_kaito.repo.modelrequest import API_VERSION, dotted
from gitops_kaito.repo.yamlsource import LocatedDoc, SourceError, escapes, load_yaml_file, raise_all

CONFIG_FILE = "gitops-kaito.yaml"
KIND = "Config"
MAX_CONFIG_BYTES = 64 * 1024
# What a repository's desired state is made of: a status commit must never touch these (it would rewrite or delete
# desired state, and count as a change of it: a feedback loop).
DESIRED_STATE_PATHS = ("models", CONFIG_FILE, "templates")


# Setting values shared by this file's `daemon:` section and the daemon's flags/env (service.settings).
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*")


class SettingsError(ValueError):
    pass


def parse_duration(text: str | float | int) -> float:
    """'90', '90s', '5m', '1h', '250ms' -> seconds."""
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.fullmatch(text)
    if not match:
        raise SettingsError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


MAX_SCHEDULE_S = 7 * 24 * 3600.0


MIN_INTERVAL_S = 1.0


def schedulable(name: str, text: str) -> float:
    """A duration the scheduler can add to a datetime: a huge one (the schema only checks the form) overflowed; an
    interval also at least MIN_INTERVAL_S. Both `run` and `validate` (gitops-kaito.yaml's daemon:) check with this."""
    seconds = parse_duration(text)
    if seconds > MAX_SCHEDULE_S:
        raise SettingsError(f"{name} {text!r} is longer than 7 days")
    if name == "interval" and seconds < MIN_INTERVAL_S:
        raise SettingsError(f"interval {text!r} is shorter than {MIN_INTERVAL_S:g}s")
    return seconds


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise SettingsError(f"--listen takes HOST:PORT, got {text!r}")
    if int(port) > 65535:  # binding it would raise OverflowError, not an error the service reports
        raise SettingsError(f"--listen port {int(port)} is not a port (0-65535), in {text!r}")
    return host or "0.0.0.0", int(port)


@dataclass(frozen=True)
class PrunePolicy:
    enabled: bool = True
    max_share: float = 0.5  # a pass deleting more than this share of the managed models stops
    allow_all: bool = False  # lifts the max_share guard


@dataclass(frozen=True)
class StatusSettings:
    branch: str = ""  # "" = the followed branch
    path: str = "status"
    author_name: str = "gitops-kaito"
    author_email: str = "gitops-kaito@users.noreply.local"


@dataclass(frozen=True)
class AzureSettings:
    """`azure:` as the file states it. subscriptionId, resourceGroup, clusterName and armEndpoint are pins: the daemon
    takes them from its flags/environment only and refuses agent-pool work when a pin differs (provision/aks.py)."""

    subscription_id: str = ""
    resource_group: str = ""
    cluster_name: str = ""
    arm_endpoint: str = "https://management.azure.com"
    location: str = ""
    # The line of each field the file states (snake_case name -> line), for errors that point at the pin.
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class DaemonConfig:
    """`daemon:`: settings of `gitops-kaito run` kept in the repository; None = not set here.

    Field names are RunSettings' own; flags and GITOPS_KAITO_* environment variables win (RunSettings.with_repo).
    """

    interval: str | None = None
    jitter: str | None = None
    log_format: str | None = None
    # Bound when the service starts (the listener's socket, the Lease it campaigns for): read from the repository
    # at start-up; a later change is reported and takes effect at the next restart.
    listen: str | None = None
    lease_name: str | None = None


# Settings a repository must not choose, and why: a merged pull request could otherwise redirect the daemon to
# another cluster or repository, or make it read a file of the operator's choosing.
NOT_FROM_REPOSITORY = {
    "gitUrl": "it is how the repository is found; use --git-url or GITOPS_KAITO_GIT_URL",
    "branch": "it is how the repository is found; use --branch or GITOPS_KAITO_BRANCH",
    "cacheDir": "the clone lives there before the repository is read",
    "gitToken": "credentials never live in Git; use GITOPS_KAITO_GIT_TOKEN",
    "sshKeyFile": "credentials are the operator's; use --ssh-key-file or GITOPS_KAITO_SSH_KEY_FILE",
    "knownHostsFile": "credentials are the operator's; use --known-hosts-file or GITOPS_KAITO_KNOWN_HOSTS_FILE",
    "webhookSecretFile": "secrets are the operator's; use --webhook-secret-file or GITOPS_KAITO_WEBHOOK_SECRET_FILE",
    "kubeconfig": "a merged change must not pick the cluster; use --kubeconfig or KUBECONFIG",
    "context": "a merged change must not pick the cluster; use --context",
    "allowMassPrune": "use prune.allowAll in this file, or --allow-mass-prune",
    "instance": "set instance at the top level of this file",
    "paths": "set paths at the top level of this file",
    "statusBranch": "set status.branch in this file",
    "leaderElection": "how many replicas act is the Deployment's choice (replicas, --no-leader-election): a merged "
                      "change must not let two replicas act at once",
    "leaseNamespace": "the Lease lives where the Deployment's Role grants access to it; use --lease-namespace or "
                      "GITOPS_KAITO_LEASE_NAMESPACE",
}


@dataclass(frozen=True)
class NodeClaimSettings:
    """`nodeClaims:`: the lifecycle of the NodeClaims the nodeclaim mode creates (karpenter.sh/v1 spec fields)."""

    # Karpenter's default (720h, `pkg/apis/v1/nodeclaim.go` at karpenter v1.7.0) would drain a model's GPU node every
    # 30 days wherever an upstream Karpenter manages the nodeClassRef; a node declared in Git stays until Git says.
    expire_after: str = "Never"
    termination_grace_period: str | None = None  # unset: the drain may take as long as it needs


def _default_node_class_ref() -> Mapping[str, str]:
    return {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"}


@dataclass(frozen=True)
class RepoConfig:
    default_namespace: str = "default"
    provisioning: str = "kaito"  # kaito | nodeclaim | machine | aks | byo
    runtime: str = "vllm"
    clouds: tuple[str, ...] = ("azure",)
    prune: PrunePolicy = field(default_factory=PrunePolicy)
    replace_policy: str = "manual"  # manual | auto
    # correct | report: a hand edit of a field we manage is reverted on the next pass, or left and reported
    # (a model's gitops.kaito.sh/drift annotation overrides it for that model)
    drift: str = DRIFT_CORRECT
    status: StatusSettings = field(default_factory=StatusSettings)
    prices: Mapping[str, float] = field(default_factory=dict)  # SKU name (catalog spelling) -> USD per node-hour
    azure: AzureSettings = field(default_factory=AzureSettings)
    node_class_ref: Mapping[str, str] = field(default_factory=_default_node_class_ref)
    node_claims: NodeClaimSettings = field(default_factory=NodeClaimSettings)
    instance: str = DEFAULT_INSTANCE  # gitops.kaito.sh/instance of everything this repository's daemon owns
    paths: tuple[str, ...] = ()  # only model files under these repo-relative paths are loaded; () = all of models/
    daemon: DaemonConfig = field(default_factory=DaemonConfig)

    @property
    def status_dir(self) -> str:
        """Where this instance's status files go: status.path, or status.path/<instance> for a named instance
        (so two instances writing status into one repository never rewrite each other's STATUS.md)."""
        root = self.status.path.strip("/") or StatusSettings.path
        return root if self.instance == DEFAULT_INSTANCE else f"{root}/{self.instance}"


@dataclass(frozen=True)
class Scope:
    """Command-line (or environment) overrides of a repository's instance and paths; None = the file's value."""

    instance: str | None = None
    paths: tuple[str, ...] | None = None

    def apply(self, config: RepoConfig) -> RepoConfig:
        out = config
        if self.instance is not None:
            out = dataclasses.replace(out, instance=self.instance)
        if self.paths is not None:
            out = dataclasses.replace(out, paths=self.paths)
        return out


def check_instance(value: str) -> str:
    """An instance name as given on the command line or in the environment; ValueError when it is not a label."""
    if not is_dns_label(value):
        raise ValueError(f"instance {value!r} must be a DNS-1123 label (lowercase letters, digits and '-', "
                         "at most 63 characters)")
    return value


def normalize_scope_path(value: str) -> str:
    """A --path/paths entry as the loader compares it: relative to the repository root, no './', no trailing '/'.
    ValueError unless it is under models/."""
    text = value.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    text = text.rstrip("/")
    parts = text.split("/")
    if parts[0] != "models" or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"path {value!r} must be a folder or file under models/ (e.g. models/team-a), "
                         "relative to the repository root")
    return text


EXAMPLE_CONFIG = f"""\
# gitops-kaito repository settings. Every field below is optional and shows its default.
# Schema: schemas/config.schema.json in gitops-kaito; `gitops-kaito validate` checks this file.
apiVersion: {API_VERSION}
kind: {KIND}
instance: default           # several gitops-kaito daemons on one cluster each need their own name; each only
                            # touches objects labelled gitops.kaito.sh/instance=<its name> (status: status/<name>/)
# paths: [models/team-a]    # load only these parts of models/; the rest belongs to another instance
defaults:
  namespace: default        # the namespace `gitops-kaito add` uses when --namespace is not given
  provisioning: kaito       # kaito | nodeclaim | machine | aks | byo
  runtime: vllm             # vllm | transformers
clouds: [azure]             # where a SKU may be chosen when a request names none: azure, aws, arc
prune:
  enabled: true             # delete what the reconciler created once its request is gone
  maxShare: 0.5             # ...but stop when one pass would delete more than this share of the models
  allowAll: false
replacePolicy: manual       # manual: only plan delete+create for immutable KAITO fields; auto: do it
drift: correct              # a hand edit of a field gitops-kaito manages: correct reverts it on the next pass;
                            # report leaves it in place and reports it (plan, status, events) until the model
                            # file changes. A model's annotation gitops.kaito.sh/drift: report|correct wins.
status:
  branch: ""                # "" = the branch being followed
  path: status
  authorName: gitops-kaito
  authorEmail: gitops-kaito@users.noreply.local
prices: {{}}                  # e.g. {{Standard_NC24ads_A100_v4: 2.95}}: your USD per node-hour
nodeClaims:                 # provisioning: nodeclaim; applies to NodeClaims created from then on (spec is immutable)
  expireAfter: Never        # Karpenter's own default, 720h, replaces a model's GPU node every 30 days
  # terminationGracePeriod: 1h   # how long a node may drain before it is removed anyway (default: no limit)
# daemon:                   # `gitops-kaito run`; its flags and GITOPS_KAITO_* environment variables win
#   interval: 60s           # time between passes (re-read after every pass)
#   jitter: 5s              # random delay added to each interval; default a tenth of it, at most 5s
#   logFormat: text         # text | json
#   listen: 127.0.0.1:8080  # webhooks, probes, metrics; this and leaseName apply at the next restart
#   leaseName: gitops-kaito-leader   # default gitops-kaito-leader-<instance> for a named instance
"""


def load_config(repo_dir: Path, catalog: Catalog | None = None) -> RepoConfig:
    """The repo's gitops-kaito.yaml, or defaults when there is none. Raises SourceError with file and line."""
    path = Path(repo_dir) / CONFIG_FILE
    if not os.path.lexists(path):  # a dangling symlink is a broken file, not a missing one (defaults would widen)
        return RepoConfig()
    if escapes(path, Path(repo_dir)):
        raise SourceError(CONFIG_FILE, None, None, "symlink points outside the repository: refused")
    doc = load_yaml_file(path, Path(repo_dir), max_bytes=MAX_CONFIG_BYTES)
    config = config_from_document(doc, catalog)
    target = Path(repo_dir) / config.status.path
    if os.path.lexists(target) and (target.is_symlink() or not target.is_dir()):
        raise doc.error(("status", "path"), f"status.path {config.status.path!r} is a file or symlink in the "
                        "repository: status commits would replace it; pick a folder of its own")
    return config


def recover_scope(repo_dir: Path) -> RepoConfig:
    """Defaults plus whatever valid instance/paths a broken gitops-kaito.yaml still states.

    A named instance whose config breaks must not fall back to the default instance's identity: it would then
    list, update and adopt the default instance's objects (prune is off while the file is broken, writes are not).
    """
    # Read under the same limits as load_config: a file refused for its size (or as a FIFO) is never parsed here.
    try:
        data = load_yaml_file(Path(repo_dir) / CONFIG_FILE, Path(repo_dir), max_bytes=MAX_CONFIG_BYTES).data
    except SourceError:
        return RepoConfig()
    if not isinstance(data, dict):
        return RepoConfig()
    out = RepoConfig()
    instance = data.get("instance")
    if isinstance(instance, str):
        with contextlib.suppress(ValueError):
            out = dataclasses.replace(out, instance=check_instance(instance))
    paths = data.get("paths")
    if isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths):
        with contextlib.suppress(ValueError):
            out = dataclasses.replace(out, paths=tuple(dict.fromkeys(normalize_scope_path(p) for p in paths)))
    return out


def status_path_problem(path: str, paths: Sequence[str] = ()) -> str | None:
    """Why status files must not go to `path` (relative to the repository root), or None.

    A status commit replaces its folder, so the folder must hold nothing else: not the root, not the config file,
    models/ or templates/ (or anything under or above them, `paths:` included), no hidden folder (.git, .github)
    and no '.' or '..' component. Otherwise one status commit could delete or rewrite desired state.
    """
    parts = path.strip("/").split("/")
    if parts == [""]:
        return "the repository root cannot be the status folder"
    for part in parts:
        if part in ("", ".", ".."):
            return f"{path!r} must be a plain folder path (no empty, '.' or '..' parts)"
        if part.startswith("."):
            return f"{path!r} is or is inside the hidden folder {part}/ (.git, .github, ...)"
    folder = "/".join(parts)
    for reserved in (*DESIRED_STATE_PATHS, *paths):
        where = ("is" if folder == reserved else "is inside" if folder.startswith(reserved + "/")
                 else "contains" if reserved.startswith(folder + "/") else "")
        if where:
            return (f"{path!r} {where} {reserved}{'/' if where == 'is inside' else ''}: status commits must never "
                    f"touch desired state ({', '.join(DESIRED_STATE_PATHS)})")
    return None


def _paths(data: Any) -> tuple[str, ...]:
    raw = data.get("paths") if isinstance(data, dict) else None
    return tuple(p.strip("./") for p in raw if isinstance(p, str)) if isinstance(raw, list) else ()


def config_from_document(doc: LocatedDoc, catalog: Catalog | None = None) -> RepoConfig:
    """Validate one parsed config document and build the RepoConfig (prices are checked against catalog).

    Every problem of the file is reported at once (a SourceErrors when there are several), each with its line: a
    reader fixing the file should not have to run `validate` once per mistake.
    """
    data = doc.data
    refused = _not_from_repository(doc)
    problems = [e for e, _ in refused] + _schema_problems(doc, skip={path for _, path in refused})
    defaults = data.get("defaults", {})
    prune = data.get("prune", {})
    status = data.get("status", {})
    azure = data.get("azure", {})
    status_path = str(status.get("path", StatusSettings.path)).strip("/") if isinstance(status, dict) else ""
    if isinstance(status, dict) and isinstance(status.get("path", ""), str):
        problem = status_path_problem(status_path, _paths(data))
        if problem:
            problems.append(doc.error(("status", "path"), f"status.path: {problem}"))
    branch = status.get("branch", "") if isinstance(status, dict) else ""
    if isinstance(branch, str) and branch:
        problem = branch_problem(branch)
        if problem:
            problems.append(doc.error(("status", "branch"), f"status.branch: {branch!r} must be a git branch name "
                                      f"(git check-ref-format): {problem}"))
    prices = _prices(doc, catalog or load_catalog(), problems)
    daemon = _daemon(doc, problems)
    raise_all(_one_per_line(problems))
    return RepoConfig(
        default_namespace=defaults.get("namespace", RepoConfig.default_namespace),
        provisioning=defaults.get("provisioning", RepoConfig.provisioning),
        runtime=defaults.get("runtime", RepoConfig.runtime),
        clouds=tuple(data.get("clouds", RepoConfig.clouds)),
        prune=PrunePolicy(
            enabled=prune.get("enabled", PrunePolicy.enabled),
            max_share=float(prune.get("maxShare", PrunePolicy.max_share)),
            allow_all=prune.get("allowAll", PrunePolicy.allow_all),
        ),
        replace_policy=data.get("replacePolicy", RepoConfig.replace_policy),
        drift=data.get("drift", RepoConfig.drift),
        status=StatusSettings(
            branch=status.get("branch", StatusSettings.branch),
            path=status_path,
            author_name=status.get("authorName", StatusSettings.author_name),
            author_email=status.get("authorEmail", StatusSettings.author_email),
        ),
        prices=prices,
        azure=AzureSettings(
            subscription_id=azure.get("subscriptionId", ""),
            resource_group=azure.get("resourceGroup", ""),
            cluster_name=azure.get("clusterName", ""),
            arm_endpoint=azure.get("armEndpoint", AzureSettings.arm_endpoint),
            location=azure.get("location", ""),
            lines={snake: line for snake, camel in _AZURE_KEYS.items()
                   if camel in azure and (line := doc.line_of(("azure", camel))) is not None},
        ),
        node_class_ref=dict(data.get("nodeClassRef") or _default_node_class_ref()),
        node_claims=NodeClaimSettings(
            expire_after=(data.get("nodeClaims") or {}).get("expireAfter", NodeClaimSettings.expire_after),
            termination_grace_period=(data.get("nodeClaims") or {}).get("terminationGracePeriod"),
        ),
        instance=data.get("instance", DEFAULT_INSTANCE),
        paths=tuple(dict.fromkeys(normalize_scope_path(p) for p in data.get("paths") or ())),
        daemon=daemon,
    )


_AZURE_KEYS = {"subscription_id": "subscriptionId", "resource_group": "resourceGroup", "cluster_name": "clusterName",
               "arm_endpoint": "armEndpoint", "location": "location"}


def _not_from_repository(doc: LocatedDoc) -> list[tuple[SourceError, tuple[str, ...]]]:
    """Daemon settings the repository must never choose, at the top level or under daemon:, each with its reason
    (and its path, so the schema's "unknown field" for the same key is not shown as well)."""
    out: list[tuple[SourceError, tuple[str, ...]]] = []
    top_level = set(_schema().get("properties") or {})
    data = doc.data if isinstance(doc.data, dict) else {}
    for key in data:
        if key in NOT_FROM_REPOSITORY and key not in top_level:
            out.append((doc.error((key,), f"{key} can never come from the repository: {NOT_FROM_REPOSITORY[key]}"),
                        (key,)))
    daemon = data.get("daemon")
    for key in daemon if isinstance(daemon, dict) else ():
        if key in NOT_FROM_REPOSITORY:
            out.append((doc.error(("daemon", key), f"daemon.{key} can never come from the repository: "
                                  f"{NOT_FROM_REPOSITORY[key]}"), ("daemon", key)))
    return out


def _one_per_line(problems: list[SourceError]) -> list[SourceError]:
    """The same problem seen twice (the schema's form check and the value check of one field) is shown once."""
    seen: set[tuple[int | None, str]] = set()
    out: list[SourceError] = []
    for p in problems:
        key = (p.line, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _daemon(doc: LocatedDoc, problems: list[SourceError]) -> DaemonConfig:
    """The schema has checked the forms (durations, HOST:PORT, names); the values are checked here as the daemon
    will (at most 7 days, a real port), so `validate` refuses what `run` would. An empty string counts as not set."""
    daemon = doc.data.get("daemon") or {}
    if not isinstance(daemon, dict):
        return DaemonConfig()
    located = {e.line for e in problems}
    for key in ("interval", "jitter", "listen"):
        if not daemon.get(key) or not isinstance(daemon[key], str):
            continue
        try:
            _ = parse_listen(daemon[key]) if key == "listen" else schedulable(key, daemon[key])
        except SettingsError as err:
            error = doc.error(("daemon", key), f"daemon.{key}: {err}")
            if error.line not in located:  # the schema already said this value has the wrong form
                problems.append(error)
    return DaemonConfig(
        interval=daemon.get("interval") or None,
        jitter=daemon.get("jitter") or None,
        log_format=daemon.get("logFormat"),
        listen=daemon.get("listen") or None,
        lease_name=daemon.get("leaseName") or None,
    )


def _prices(doc: LocatedDoc, catalog: Catalog, problems: list[SourceError]) -> dict[str, float]:
    out: dict[str, float] = {}
    prices = doc.data.get("prices") or {}
    for name, usd in prices.items() if isinstance(prices, dict) else ():
        sku = catalog.sku(str(name), include_removed=True)
        if sku is None:
            close = difflib.get_close_matches(str(name), [s.name for s in catalog.skus(include_removed=True)], n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            problems.append(doc.error(("prices", name), f"prices: unknown GPU SKU {name!r}{hint}"))
            continue
        if sku.name in out:
            problems.append(doc.error(("prices", name),
                                      f"prices: {sku.name} is listed twice (names are case-insensitive)"))
            continue
        if isinstance(usd, int | float) and not isinstance(usd, bool):
            out[sku.name] = float(usd)
    return out


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    validator: jsonschema.protocols.Validator = schemas.validator_for(_schema())
    return validator


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return dict(json.loads((data_path("schemas") / "config.schema.json").read_text(encoding="utf-8")))


def _schema_problems(doc: LocatedDoc, skip: set[tuple[str, ...]]) -> list[SourceError]:
    """Every schema violation, one per field (an unknown key each), except keys already reported in `skip`."""
    out: list[SourceError] = []
    for err in _validator().iter_errors(doc.data):
        out += [e for e, path in _locate(doc, err) if path not in skip]
    return out


def _locate(doc: LocatedDoc, err: jsonschema.ValidationError) -> list[tuple[SourceError, tuple[str, ...]]]:
    path: list[str | int] = list(err.absolute_path)
    where = dotted(path) if path else "the top level"
    dotted_path = tuple(str(p) for p in path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = list((err.schema.get("properties") or {}) if isinstance(err.schema, dict) else {})
        extra = sorted(str(k) for k in err.instance if k not in allowed)
        out: list[tuple[SourceError, tuple[str, ...]]] = []
        for key in extra:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(allowed)})"
            out.append((doc.error([*path, key], f"unknown field {dotted([*path, key])!r}{hint}"), (*dotted_path, key)))
        if out:
            return out
    if err.validator == "required":
        return [(doc.error(path, f"{where}: {err.message}"), dotted_path)]
    custom = err.schema.get("x-error") if isinstance(err.schema, dict) else None
    if custom:
        return [(doc.error(path, f"{where}: {_shown(err.instance)} {custom}"), dotted_path)]
    return [(doc.error(path, f"{where}: {err.message}"), dotted_path)]


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
