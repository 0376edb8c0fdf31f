"""The Kubernetes client adapter: connect (kubeconfig, context or in-cluster), discover, list what we own, apply, delete.

Everything goes through the official client's DynamicClient; errors come out as KubeError with the server's reason.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client import rest as k8s_rest
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from gitops_kaito import __version__
from gitops_kaito.model.objects import (
    MANAGED_KINDS as MANAGED_KINDS,  # re-exported: the kinds a pass LISTs (watch reads them here)
)
from gitops_kaito.model.objects import WORKSPACE_VERSIONS, Manifest, ObjectRef
from gitops_kaito.model.ownership import FIELD_MANAGER, OWNER_SELECTOR, instance_selector

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = f"gitops-kaito/{__version__}"
# kubectl's and client-go's page size: a LIST holds one page's raw body at a time, each page cut down to `compact`
# before the next is read (at 5,000 models the one-shot body of 5,000 Workspaces was the pass's peak).
LIST_PAGE_SIZE = 500
# How often a paged LIST starts again after its continue token expired (410: the server compacted the snapshot the
# pages were read from) before it asks once more without a limit, in one response, as client-go's pager does.
LIST_RESTARTS = 2
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_META_KEPT = ("name", "namespace", "uid", "resourceVersion", "generation", "labels", "deletionTimestamp",
              "creationTimestamp", "finalizers", "ownerReferences")
_FIELDS_KEPT = ("manager", "operation", "subresource", "fieldsV1")
KAITO_MISSING = "KAITO is not installed: the API server does not serve workspaces.kaito.sh/v1beta1"



@dataclass(frozen=True)
class ListSpec:
    """One LIST (or LIST + WATCH) of a managed kind: its served version and the label selector to read it with."""

    api_version: str
    kind: str
    label_selector: str


_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
PRECONDITION_FAILED = "Precondition failed"
_cache_counter = itertools.count()


# What every "no cluster" error ends with: the three ways to name one.
HOW_TO_POINT = ("point at a cluster with --kubeconfig FILE (and --context NAME) or KUBECONFIG=FILE, or start a local "
                "one with `gitops-kaito sandbox --kubeconfig-out FILE`")


class KubeError(Exception):
    """An API call that failed, with the server's HTTP status, reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        return self.status == 0 or self.status in _TRANSIENT_STATUS


class KaitoNotInstalled(KubeError):
    """The cluster does not serve the Workspace API at all."""

    def __init__(self) -> None:
        super().__init__(0, "NotInstalled", KAITO_MISSING)


class KindNotServed(KubeError):
    """A kind we need (e.g. Karpenter's NodeClaim) is not served by the cluster."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(0, "NotServed", f"the API server does not serve {kind} ({api_version}); is its CRD installed?")


class StaleObject(KubeError):
    """A delete whose preconditions (uid, resourceVersion) the API server refused: the object changed (or was
    replaced by another of the same name) since it was read, so the decision to delete it is stale."""


class WriteObserver(Protocol):
    """Told about our writes (the watch cache: our own writes are not changes to react to)."""

    def writing(self, ref: ObjectRef) -> Any: ...  # a context manager around the request
    def wrote(self, manifest: Manifest) -> None: ...
    def deleted(self, ref: ObjectRef) -> None: ...


@dataclass(frozen=True)
class ApiRetry:
    """Retries of transient failures (429 with Retry-After, 5xx, dropped connections), with capped backoff."""

    attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    max_retry_after_s: float = 10.0
    # Every call's (connect, read) deadline: a server that accepts and never answers must not hang the pass.
    request_timeout_s: float | None = 30.0


class Kube:
    """One connection to one cluster; cheap discovery lookups are cached for the life of the object."""

    def __init__(self, api_client: k8s_client.ApiClient, *, retry: ApiRetry | None = None,
                 cache_file: Path | None = None, sleep: Callable[[float], None] = time.sleep,
                 pool_size: int = 16) -> None:
        api_client.user_agent = USER_AGENT
        # Apply runs several requests at once (ApplyOptions.max_in_flight): one pooled connection for each.
        api_client.configuration.connection_pool_maxsize = max(pool_size, 4)
        # Our own retry loop decides what is retried; urllib3's silent retries would hide and repeat writes,
        # and sleep through a server's whole Retry-After (an hour, if it says so). The pool manager copies
        # `retries` when the rest client is built, so an existing one is rebuilt to see the change.
        api_client.configuration.retries = False
        self.retry = retry or ApiRetry()
        api_client.rest_client.close()
        api_client.rest_client = _DeadlineRESTClient(api_client.configuration, self.retry.request_timeout_s)
        self.api_client = api_client
        self._sleep = sleep
        self._cache_file = cache_file or _default_cache_file()
        self._dynamic: DynamicClient | None = None
        self._resources: dict[tuple[str, str], Any] = {}
        self._missing: dict[tuple[str, str], float] = {}  # negative lookups, retried after _MISSING_TTL_S
        self._discovery = threading.RLock()  # apply's threads share the discovery cache
        # 429 Retry-After: no request of this connection starts before this monotonic time (API priority and
        # fairness asks the client to slow down, not one request of it).
        self._not_before = 0.0
        self.observer: WriteObserver | None = None
        self._on_close: list[Callable[[], None]] = []
    _MISSING_TTL_S = 60.0

    @classmethod
    def connect(cls, kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None,
                **kwargs: Any) -> Kube:
        """kubeconfig (or $KUBECONFIG, ~/.kube/config) with an optional context; in-cluster config otherwise.

        With none of them the error says how to point at a cluster, not that the in-cluster config failed: outside a
        pod, that is never what the user meant.
        """
        # $KUBECONFIG may list several files; the client merges them like kubectl when given the whole value.
        given = "--kubeconfig" if kubeconfig else "KUBECONFIG" if os.environ.get("KUBECONFIG") else ""
        path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG", "")
        if not path and Path("~/.kube/config").expanduser().exists():
            path = str(Path("~/.kube/config").expanduser())
        if given and not any(Path(p).expanduser().is_file() for p in path.split(os.pathsep) if p):
            raise KubeError(0, "ConfigError", f"kubeconfig {path} (from {given}) does not exist; {HOW_TO_POINT}")
        if not path and not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise KubeError(0, "ConfigError", "no cluster to talk to: no --kubeconfig, KUBECONFIG is not set, "
                            f"~/.kube/config does not exist and this is not running in a pod; {HOW_TO_POINT}")
        try:
            if path:
                api = k8s_config.new_client_from_config(config_file=path, context=context, persist_config=False)
            else:
                configuration = k8s_client.Configuration()
                k8s_config.load_incluster_config(client_configuration=configuration)
                api = k8s_client.ApiClient(configuration)
        except (k8s_config.ConfigException, OSError) as err:
            where = path or "the pod's in-cluster config"
            raise KubeError(0, "ConfigError", f"cannot load Kubernetes configuration ({where}): {err}") from None
        return cls(api, **kwargs)

    def clone(self) -> Kube:
        """A second connection to the same cluster (own connection pool): watch streams hold their connections for
        minutes and must not take the ones apply needs."""
        configuration = k8s_client.Configuration()
        configuration.__dict__.update(self.api_client.configuration.__dict__)
        return Kube(k8s_client.ApiClient(configuration), retry=self.retry, sleep=self._sleep, pool_size=8)

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    def on_close(self, hook: Callable[[], None]) -> None:
        """Run `hook` when the connection closes, before its pool goes (the Event sender flushes what it holds)."""
        self._on_close.append(hook)

    def close(self) -> None:
        hooks, self._on_close = self._on_close, []
        for hook in hooks:
            try:
                hook()
            except Exception:  # closing must finish whatever a hook does
                log.exception("while closing the connection")
        self.api_client.close()
        try:
            self._cache_file.unlink()
        except OSError:
            pass

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ discovery

    @property
    def dynamic(self) -> DynamicClient:
        with self._discovery:
            if self._dynamic is None:
                self._dynamic = self._call(lambda: DynamicClient(self.api_client, cache_file=str(self._cache_file)),
                                           "discover the API")
            return self._dynamic

    def resource(self, api_version: str, kind: str) -> Any | None:
        """The discovered API resource, or None when the server does not serve it."""
        with self._discovery:
            return self._resource((api_version, kind))

    def _resource(self, key: tuple[str, str]) -> Any | None:
        api_version, kind = key
        if key in self._resources:
            return self._resources[key]
        missed = self._missing.get(key)
        if missed is not None and time.monotonic() - missed < self._MISSING_TTL_S:
            return None

        def lookup() -> Any | None:
            try:
                return self.dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                return None

        found = self._call(lookup, f"discover {kind} ({api_version})")
        if found is None:
            self._missing[key] = time.monotonic()
        else:
            self._resources[key] = found
            self._missing.pop(key, None)
        return found

    def served(self, api_version: str, kind: str) -> bool:
        return self.resource(api_version, kind) is not None

    def workspace_version(self, prefer: str | None = None) -> str:
        """The Workspace apiVersion to read with; raises KaitoNotInstalled when none is served."""
        order = [prefer] if prefer in WORKSPACE_VERSIONS else []
        for version in [*order, *WORKSPACE_VERSIONS]:
            if version and self.served(version, "Workspace"):
                return version
        raise KaitoNotInstalled()

    def _required(self, api_version: str, kind: str) -> Any:
        found = self.resource(api_version, kind)
        if found is None:
            if kind == "Workspace":
                raise KaitoNotInstalled()
            raise KindNotServed(api_version, kind)
        return found

    def managed_lists(self, workspace_version: str, instance: str) -> tuple[ListSpec, ...]:
        """What one pass reads, from MANAGED_KINDS (the one list of managed kinds): per kind the first served version,
        selecting `instance`'s objects; list_all kinds unfiltered (GPU node kinds for KAITO's own NodeClaims/Machines,
        Workspaces for an InferenceSet's replicas)."""
        selector = instance_selector(instance)
        specs: list[ListSpec] = []
        for managed in MANAGED_KINDS:
            kind_selector = "" if managed.list_all else selector
            if managed.versions == WORKSPACE_VERSIONS:
                specs.append(ListSpec(workspace_version, managed.kind, kind_selector))
                continue
            for version in managed.versions:
                if self.served(version, managed.kind):
                    specs.append(ListSpec(version, managed.kind, kind_selector))
                    break
        return tuple(specs)

    # ------------------------------------------------------------------ reads

    def list_owned(self, api_version: str, kind: str, label_selector: str = OWNER_SELECTOR) -> list[Manifest]:
        """Every object of one kind, in every namespace, carrying our owner label, as `compact` projections: one LIST,
        read in pages of LIST_PAGE_SIZE."""
        return self.list_versioned(api_version, kind, label_selector)[0]

    def list_versioned(self, api_version: str, kind: str, label_selector: str = OWNER_SELECTOR,
                       page_size: int = LIST_PAGE_SIZE) -> tuple[list[Manifest], str]:
        """list_owned plus the list's resourceVersion (a watch from it misses nothing).

        The pages are one consistent snapshot, at the first page's resourceVersion. When the server has compacted it
        before the last page (410 Expired on a continue token), the LIST starts again from the first page (the
        objects read so far are dropped: they may be stale); after LIST_RESTARTS such restarts, once more without a
        limit, which cannot expire."""
        resource = self._required(api_version, kind)
        for restart in range(LIST_RESTARTS + 1):
            try:
                return self._list_pages(resource, api_version, kind, label_selector,
                                        page_size if restart < LIST_RESTARTS else 0)
            except _ContinueExpired as expired:
                log.info("list %s: the continue token expired after %d object(s) (%s); listing again from the start",
                         kind, expired.read, expired.error.message)
        raise AssertionError("unreachable: the last attempt is not paged")

    def _list_pages(self, resource: Any, api_version: str, kind: str, label_selector: str, limit: int
                    ) -> tuple[list[Manifest], str]:
        items: list[Manifest] = []
        token: str | None = None
        version = ""
        shared: dict[str, Any] = {}  # one copy of each distinct fieldsV1 tree in this LIST (see compact)
        while True:
            try:
                body = self._json(lambda t=token: self.dynamic.get(  # type: ignore[misc]
                    resource, label_selector=label_selector, limit=limit or None, _continue=t, serialize=False),
                    f"list {kind}")
            except KubeError as err:
                if err.status == 410 and token:
                    raise _ContinueExpired(err, len(items)) from None
                raise
            page = body.pop("items", None) or []
            meta = body.get("metadata") or {}
            for raw in page:
                item = compact(raw, shared)
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                items.append(item)
            del page  # the raw objects: only their projections stay
            version = version or str(meta.get("resourceVersion") or "")
            token = meta.get("continue") or None
            if not token:
                return items, version

    def get(self, ref: ObjectRef) -> Manifest | None:
        resource = self._required(ref.api_version, ref.kind)
        try:
            return self._json(lambda: self.dynamic.get(resource, name=ref.name, namespace=ref.namespace or None,
                                                       serialize=False),
                              f"get {ref}")
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        """The key names of a Secret, None when it does not exist. Its values are dropped here, unread: they are
        never returned, logged or kept (a model's modelAccessSecret only has to hold HF_TOKEN)."""
        resource = self._required("v1", "Secret")
        try:
            body = self._json(lambda: self.dynamic.get(resource, name=name, namespace=namespace, serialize=False),
                              f"get Secret {namespace}/{name}")
        except KubeError as err:
            if err.status == 404:
                return None
            raise
        keys = frozenset(body.get("data") or {}) | frozenset(body.get("stringData") or {})
        body.clear()
        return keys

    # ------------------------------------------------------------------ writes

    def apply(self, manifest: Manifest, *, dry_run: bool = False, field_manager: str = FIELD_MANAGER,
              force: bool = True) -> Manifest:
        """Server-side apply as gitops-kaito (or `field_manager`: the hand-over manager), forcing conflicts unless
        force=False.

        force=True for updates of our own objects because the repository is the source of truth for every field
        we send: a person's kubectl edit of one of them is drift to revert, not a conflict to stop on. Fields we
        do not send stay with whoever set them. A create goes without force: should someone else have made an
        object of that name since the pass looked, their fields answer 409 instead of being taken over.
        """
        ref = ObjectRef.of(manifest)
        resource = self._required(ref.api_version, ref.kind)
        with self._writing(ref, dry_run):
            out = self._json(lambda: self.dynamic.server_side_apply(
                resource, body=manifest, name=ref.name, namespace=ref.namespace or None,
                field_manager=field_manager, force_conflicts=force, dry_run="All" if dry_run else None,
                serialize=False), f"apply {ref}")
            if self.observer is not None and not dry_run:
                out.setdefault("apiVersion", ref.api_version)
                out.setdefault("kind", ref.kind)
                self.observer.wrote(out)
        return out

    def dry_run_create(self, manifest: Manifest) -> bool:
        """A server-side dry run of creating the object (POST, dryRun=All, our field manager) even while an object of
        that name exists: validation and admission answer as for a new object. True when admitted; an existing
        object's 409 AlreadyExists comes only after admission passed, so it counts as admitted too."""
        ref = ObjectRef.of(manifest)
        resource = self._required(ref.api_version, ref.kind)
        try:
            self._call(lambda: self.dynamic.create(resource, body=manifest, namespace=ref.namespace or None,
                                                   field_manager=FIELD_MANAGER, dry_run="All", serialize=False),
                       f"create {ref} (dry run)")
        except KubeError as err:
            if err.status == 409 and err.reason == "AlreadyExists":
                return True
            raise
        return True

    def delete(self, ref: ObjectRef, precondition: tuple[str, str] | None = None) -> bool:
        """Delete in the background; False when it was already gone.

        `precondition` (uid, resourceVersion) of the object as it was read: the API server refuses the delete when
        the object changed since, or is another object of the same name (StaleObject), so a decision made on a
        stale view never deletes.
        """
        resource = self._required(ref.api_version, ref.kind)
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        uid, version = precondition or ("", "")
        if uid or version:
            body["preconditions"] = {k: v for k, v in (("uid", uid), ("resourceVersion", version)) if v}
        try:
            with self._writing(ref, False):
                self._call(lambda: self.dynamic.delete(resource, name=ref.name, namespace=ref.namespace or None,
                                                       body=body, serialize=False), f"delete {ref}")
                if self.observer is not None:
                    self.observer.deleted(ref)
        except KubeError as err:
            if err.status == 404:
                return False
            if err.status == 409 and PRECONDITION_FAILED in err.message:
                raise StaleObject(err.status, err.reason, err.message) from None
            raise
        return True

    @contextmanager
    def _writing(self, ref: ObjectRef, dry_run: bool) -> Iterator[None]:
        if self.observer is None or dry_run:
            yield
            return
        with self.observer.writing(ref):
            yield

    # ------------------------------------------------------------------ plumbing

    def _json(self, fn: Callable[[], Any], what: str) -> Manifest:
        response = self._call(fn, what)
        data = response.data if hasattr(response, "data") else response
        parsed = json.loads(data) if isinstance(data, bytes | str) else data
        if not isinstance(parsed, dict):
            raise KubeError(0, "BadResponse", f"{what}: the server's answer is not a JSON object")
        return parsed

    def _call(self, fn: Callable[[], T], what: str) -> T:
        attempt = 0
        own_gate = 0.0  # the hold this call set itself (and already slept through)
        while True:
            attempt += 1
            if self._not_before > own_gate:
                wait = self._not_before - time.monotonic()
                if wait > 0:
                    self._sleep(wait)
            try:
                return fn()
            except ApiException as exc:
                err = _kube_error(exc)
                retry_after = _retry_after(exc)
            except (urllib3.exceptions.HTTPError, ConnectionError) as exc:
                err = KubeError(0, "ConnectionError", f"cannot reach the API server at {self.host}: {exc}")
                retry_after = None
            if not err.transient or attempt >= self.retry.attempts:
                raise err from None
            delay = min(self.retry.max_delay_s, self.retry.base_delay_s * 2 ** (attempt - 1))
            delay *= 0.5 + random.random() / 2  # jitter, so several replicas do not retry in step
            if retry_after is not None:
                delay = min(max(retry_after, delay), self.retry.max_retry_after_s)
                # Every thread of this connection holds back, not only this request.
                self._not_before = own_gate = max(self._not_before, time.monotonic() + delay)
            log.warning("%s failed (%s); retrying in %.1fs", what, err, delay,
                        extra={"fields": {"status": err.status, "attempt": attempt}})
            self._sleep(delay)


class _ContinueExpired(Exception):
    """A paged LIST's continue token expired (410): the LIST starts again from its first page."""

    def __init__(self, error: KubeError, read: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.read = read


def compact(obj: Mapping[str, Any], shared: dict[str, Any] | None = None) -> Manifest:
    """What a pass keeps of a listed (or watched) object: everything planning, health, status and import read, without
    managedFields' timestamps, versions and field types or kubectl's last-applied annotation (a second copy of the
    object). Only the top level and metadata are new dicts; the rest is the object's own.

    `shared`: one LIST's memo of fieldsV1 trees, so objects with the same field set (every object of a template:
    half of a listed Workspace's memory) hold one copy of it. Nothing mutates a live object's fieldsV1 (it is read by
    model/objects.owned_fields and foreign_owned), so sharing it is safe."""
    meta = obj.get("metadata") or {}
    kept: dict[str, Any] = {k: meta[k] for k in _META_KEPT if k in meta}
    annotations = meta.get("annotations")
    if annotations:
        kept["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    fields = meta.get("managedFields")
    if fields:
        entries = []
        for entry in fields:
            if not isinstance(entry, Mapping):
                continue
            small = {k: entry[k] for k in _FIELDS_KEPT if k in entry}
            tree = small.get("fieldsV1")
            if shared is not None and isinstance(tree, dict):
                # repr is exact for decoded JSON (str keys; dict, list, str, number, bool and None values)
                small["fieldsV1"] = shared.setdefault(repr(tree), tree)
            entries.append(small)
        kept["managedFields"] = entries
    out = {k: v for k, v in obj.items() if k != "metadata"}
    out["metadata"] = kept
    return out


class _DeadlineRESTClient(k8s_rest.RESTClientObject):
    """Gives every request the deadline, discovery's too: the dynamic client's discovery passes none, and a server
    that accepts and never answers would otherwise hang the pass (and the daemon's every later pass) for good.
    The one place Kube's calls get it; a caller's own _request_timeout (the Lease's, Events') still wins."""

    def __init__(self, configuration: k8s_client.Configuration, timeout_s: float | None) -> None:
        super().__init__(configuration)
        self._timeout_s = timeout_s

    def request(self, method: str, url: str, headers: Any = None, body: Any = None, post_params: Any = None,
                _request_timeout: Any = None) -> Any:
        return super().request(method, url, headers=headers, body=body, post_params=post_params,
                               _request_timeout=_request_timeout or self._timeout_s)


def _default_cache_file() -> Path:
    """A discovery cache per client: DynamicClient's default is keyed by host:port and goes stale."""
    folder = Path(tempfile.gettempdir()) / f"gitops-kaito-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    return folder / f"discovery-{next(_cache_counter)}.json"


def _kube_error(exc: ApiException) -> KubeError:
    status = int(getattr(exc, "status", 0) or 0)
    reason = str(getattr(exc, "reason", "") or "")
    message = ""
    body = getattr(exc, "body", None)
    if body:
        try:
            parsed = json.loads(body)
        except (ValueError, TypeError):
            message = str(body)[:500]
        else:
            if isinstance(parsed, dict):
                reason = str(parsed.get("reason") or reason)
                message = str(parsed.get("message") or "")
    return KubeError(status, reason or "Error", message or reason or f"HTTP {status}")


def _retry_after(exc: ApiException) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
