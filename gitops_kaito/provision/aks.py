"""The thin Azure adapter for `aks` mode: settings (environment < flags; the repository only pins), credentials, ARM.

It turns SDK AgentPool models into `agentpool.LivePool`; the reconcile logic lives in `provision/provisioner.py`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from gitops_kaito.provision.agentpool import LivePool

PUBLIC_ARM_ENDPOINT = "https://management.azure.com"
ENV_PREFIX = "GITOPS_KAITO_AZURE_"
_FIELDS = ("subscription_id", "resource_group", "cluster_name", "arm_endpoint", "location")


class AzureSettingsLike(Protocol):
    """config.AzureSettings (the `azure:` section of gitops-kaito.yaml)."""

    @property
    def subscription_id(self) -> str: ...
    @property
    def resource_group(self) -> str: ...
    @property
    def cluster_name(self) -> str: ...
    @property
    def arm_endpoint(self) -> str: ...
    @property
    def location(self) -> str: ...


class AksSettingsError(ValueError):
    """The Azure settings are incomplete or unsafe; the message names what to set and where."""


@dataclass(frozen=True)
class AksSettings:
    """Where the agent pools live and how to talk to ARM."""

    subscription_id: str = ""
    resource_group: str = ""
    cluster_name: str = ""
    arm_endpoint: str = PUBLIC_ARM_ENDPOINT
    location: str = ""
    polling_interval_s: float = 30.0  # LRO poll interval; AKS operations take minutes
    retry_total: int = 3  # azure-core's own retries (connection errors, 5xx, short Retry-After)
    # Per request (azure-core's defaults are 300 s each): a hung ARM must not hold the pass for many minutes.
    connection_timeout_s: float = 10.0
    read_timeout_s: float = 60.0

    def validate(self) -> AksSettings:
        missing = [f for f in ("subscription_id", "resource_group", "cluster_name") if not getattr(self, f)]
        if missing:
            hints = ", ".join(f"{env_var(f)} / --azure-{f.replace('_', '-')}" for f in missing)
            raise AksSettingsError(f"aks provisioning needs {', '.join(missing)}: set {hints}")
        parts = urlsplit(self.arm_endpoint)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise AksSettingsError(f"armEndpoint {self.arm_endpoint!r} is not an http(s) URL")
        if parts.scheme == "http" and not is_loopback_url(self.arm_endpoint):
            raise AksSettingsError(
                f"armEndpoint {self.arm_endpoint!r}: plain http is only allowed for loopback addresses (tokens would travel in clear)"
            )
        return self

    @property
    def credential_scope(self) -> str:
        # Sovereign clouds take their token audience from their own management endpoint.
        return self.arm_endpoint.rstrip("/") + "/.default"


def env_var(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def camel_case(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(p.capitalize() for p in rest)


# Where agent pools are written: only the operator (flags, environment) chooses it. A repository's `azure:` values for
# these are pins, compared with the operator's and never used in their place: a merged pull request must not be able
# to point agent-pool writes at another subscription, resource group, cluster or ARM endpoint.
TARGET_FIELDS = ("subscription_id", "resource_group", "cluster_name", "arm_endpoint")


def merge_settings(
    base: AzureSettingsLike | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AksSettings:
    """GITOPS_KAITO_AZURE_* variables, overridden by flags (None/"" = not given). From the repository's `azure:`
    (`base`) only what is not a target (location); its target values are pins, see pin_problems()."""
    values: dict[str, Any] = {}
    if base is not None and base.location:  # the only value of the file's azure: that is not a pin
        values["location"] = base.location
    environ = os.environ if env is None else env
    values.update({f: environ[env_var(f)] for f in _FIELDS if environ.get(env_var(f))})
    known = {f.name for f in fields(AksSettings)}
    values.update({k: v for k, v in (overrides or {}).items() if k in known and v not in (None, "")})
    return AksSettings(**values)


def pin_problems(base: AzureSettingsLike | None, settings: AksSettings) -> list[tuple[str, int, str]]:
    """(field, line, message) for each target value the repository states that is not the operator's."""
    if base is None:
        return []
    lines: Mapping[str, int] = getattr(base, "lines", None) or {}
    out: list[tuple[str, int, str]] = []
    for name in TARGET_FIELDS:
        pinned = str(getattr(base, name, "") or "")
        if name not in lines or not pinned:
            continue  # not stated in the file (a default)
        actual = str(getattr(settings, name) or "")
        if pinned.rstrip("/") == actual.rstrip("/"):
            continue
        said = f"is {actual!r}" if actual else "is not set"
        out.append((name, lines[name], f"azure.{camel_case(name)} {pinned!r} is not the daemon's ({pin_source(name)} "
                    f"{said}): where agent pools are written never comes from the repository; the file's value is "
                    "only checked against it"))
    return out


def pin_source(name: str) -> str:
    """Where the operator sets a target field."""
    return f"--azure-{name.replace('_', '-')} / {env_var(name)}"


def add_azure_flags(parser: argparse.ArgumentParser) -> None:
    """--azure-* flags that override the environment (a repository's azure: values are only checked against them)."""
    group = parser.add_argument_group("azure (aks provisioning)")
    for f in _FIELDS:
        group.add_argument(f"--azure-{f.replace('_', '-')}", dest=f"azure_{f}", default=None,
                           help=f"overrides ${env_var(f)}")


def azure_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The --azure-* flags that were given, as merge_settings overrides."""
    return {f: v for f in _FIELDS if (v := getattr(args, f"azure_{f}", None)) not in (None, "")}


def settings_from_args(base: AzureSettingsLike | None, args: argparse.Namespace,
                       env: Mapping[str, str] | None = None) -> AksSettings:
    return merge_settings(base, env, azure_overrides(args))


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StaticTokenCredential:
    """A TokenCredential with a fixed token: for the local ARM endpoint in tests and demos, never for Azure."""

    def __init__(self, token: str, lifetime_s: int = 3600) -> None:
        self._token = token
        self._lifetime_s = lifetime_s

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + self._lifetime_s)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, int(time.time()) + self._lifetime_s)


class LoopbackHttpPolicy(SansIOHTTPPolicy):
    """Lets the bearer-token policy send to http:// on loopback only, through azure-core's `enforce_https` opt-out.

    It is a per-call policy, so it runs before the auth policy and also covers list paging and LRO polls.
    """

    def on_request(self, request: PipelineRequest) -> None:
        if is_loopback_url(request.http_request.url):
            request.context["enforce_https"] = False


def make_client(settings: AksSettings, credential: Any | None = None, **client_kwargs: Any) -> Any:
    """A ContainerServiceClient for the settings. Without a credential: DefaultAzureCredential (workload identity,
    managed identity incl. IDENTITY_ENDPOINT, environment, Azure CLI)."""
    from azure.mgmt.containerservice import ContainerServiceClient

    settings.validate()
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    kwargs: dict[str, Any] = {
        "credential_scopes": [settings.credential_scope],
        "polling_interval": settings.polling_interval_s,
        "retry_total": settings.retry_total,
        "connection_timeout": settings.connection_timeout_s,
        "read_timeout": settings.read_timeout_s,
    }
    if is_loopback_url(settings.arm_endpoint):
        kwargs["per_call_policies"] = [LoopbackHttpPolicy()]
        # Proxy variables must not capture loopback traffic.
        kwargs["use_env_settings"] = False
    kwargs.update(client_kwargs)
    return ContainerServiceClient(credential, settings.subscription_id, base_url=settings.arm_endpoint, **kwargs)


def live_pool(ap: Any) -> LivePool:
    """An SDK AgentPool (41.x hybrid model) as a LivePool."""
    status = getattr(ap, "status", None)
    error = getattr(status, "provisioning_error", None) if status is not None else None
    return LivePool(
        name=str(ap.name),
        vm_size=str(ap.vm_size or ""),
        count=int(ap.count or 0),
        labels=tuple(sorted((ap.node_labels or {}).items())),
        taints=tuple(ap.node_taints or ()),
        tags=tuple(sorted((ap.tags or {}).items())),
        os_disk_gb=int(ap.os_disk_size_gb) if ap.os_disk_size_gb else None,
        provisioning_state=str(ap.provisioning_state or ""),
        error_code=str(getattr(error, "code", "") or ""),
        error_message=str(getattr(error, "message", "") or ""),
    )
