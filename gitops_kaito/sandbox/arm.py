"""A local Azure Resource Manager endpoint for AKS agent pools on 127.0.0.1, for tests and the demo.

PUT/GET/DELETE/list agentPools with ARM semantics: api-version and bearer checks, long-running operations
(Azure-AsyncOperation + Location), provisioningState transitions, ARM error bodies, fault injection, a request log.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from gitops_kaito.sandbox.controllers.base import Kube, make_api_client

_POOL_NAME = re.compile(r"[a-z][a-z0-9]{0,11}")
IN_PROGRESS_MESSAGE = "Operation is not allowed because there's an in progress {kind} node pool operation"
_IMMUTABLE = ("vmSize", "osDiskSizeGB", "osType", "osSKU", "type", "gpuProfile")
_READ_ONLY = ("provisioningState", "powerState", "status", "nodeImageVersion", "currentOrchestratorVersion")


@dataclass
class ArmFault:
    """An injected failure. `on_result=True` accepts the request and fails the operation later (async failure)."""

    method: str = "PUT"  # PUT | GET | DELETE | LIST | ANY
    pool: str | None = None  # None: any pool
    status: int = 400
    code: str = "BadRequest"
    message: str = "injected failure"
    times: int | None = 1  # None: every matching request
    retry_after: int | None = None
    on_result: bool = False
    delay_s: float = 0.0  # answer this much later (a slow or hung ARM); with status 0, then answer normally

    @classmethod
    def quota(cls, pool: str | None = None, times: int | None = 1) -> ArmFault:
        return cls("PUT", pool, 400, "QuotaExceeded",
                   "Operation could not be completed as it results in exceeding approved standardNCADSA100v4Family "
                   "Cores quota. Location: eastus, Current Limit: 0, Current Usage: 0, Additional Required: 24, "
                   "(Minimum) New Limit Required: 24.", times)

    @classmethod
    def sku_not_available(cls, pool: str | None = None, times: int | None = 1) -> ArmFault:
        return cls("PUT", pool, 200, "SkuNotAvailable",
                   "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: "
                   "Standard_NC24ads_A100_v4' is currently not available in location 'eastus'.", times, on_result=True)

    @classmethod
    def allocation_failed(cls, pool: str | None = None, times: int | None = 1) -> ArmFault:
        return cls("PUT", pool, 200, "AllocationFailed",
                   "Allocation failed. We do not have sufficient capacity for the requested VM size in this region.",
                   times, on_result=True)

    @classmethod
    def throttled(cls, method: str = "PUT", retry_after: int = 5, times: int | None = 1) -> ArmFault:
        return cls(method, None, 429, "TooManyRequests",
                   "The request is being throttled as the limit has been reached for operation type - Write.",
                   times, retry_after=retry_after)

    @classmethod
    def slow(cls, method: str = "LIST", delay_s: float = 5.0, times: int | None = 1) -> ArmFault:
        return cls(method, None, 0, "", "", times, delay_s=delay_s)

    @classmethod
    def auth_failure(cls, method: str = "ANY", times: int | None = None) -> ArmFault:
        return cls(method, None, 401, "InvalidAuthenticationToken",
                   "The access token is invalid or has expired.", times)

    @classmethod
    def in_progress(cls, pool: str | None = None, times: int | None = 1) -> ArmFault:
        return cls("PUT", pool, 409, "OperationNotAllowed", IN_PROGRESS_MESSAGE.format(kind="create"), times)

    def matches(self, method: str, pool: str | None) -> bool:
        return (self.method in ("ANY", method)) and (self.pool is None or self.pool == pool)


@dataclass(frozen=True)
class ArmRequest:
    method: str  # LIST for a collection GET
    path: str
    query: str
    pool: str | None
    status: int


class RequestLog:
    """Every request the endpoint answered, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[ArmRequest] = []

    def add(self, entry: ArmRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    @property
    def entries(self) -> tuple[ArmRequest, ...]:
        with self._lock:
            return tuple(self._entries)

    def count(self, method: str | None = None, pool: str | None = None, status: int | None = None) -> int:
        return sum(
            1 for e in self.entries
            if (method is None or e.method == method) and (pool is None or e.pool == pool)
            and (status is None or e.status == status)
        )

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class _Operation:
    id: str
    kind: str  # create | update | scale | delete
    pool: str
    started: float
    fault: ArmFault | None = None
    status: str = "InProgress"
    error: dict[str, Any] | None = None
    ended: float | None = None


@dataclass
class ArmSettings:
    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "rg-ml"
    cluster_name: str = "aks-ml"
    location: str = "eastus"
    token: str = "sandbox-token"
    operation_duration_s: float = 0.0  # operations finish this long after they start (unless held)
    page_size: int = 50
    on_pool_ready: Callable[[dict[str, Any]], None] | None = None  # hook: e.g. create Nodes in a sandbox ApiServer
    on_pool_deleted: Callable[[str], None] | None = None


class _ArmServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops a burst's SYNs: each one then waits the kernel's 1 s retry


class ArmEmulator:
    """The local ARM endpoint. Use as a context manager, or start()/stop()."""

    def __init__(self, settings: ArmSettings | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings or ArmSettings()
        self.request_log = RequestLog()
        self._lock = threading.RLock()
        self._advance_lock = threading.Lock()
        self._pools: dict[str, dict[str, Any]] = {}
        self._ops: dict[str, _Operation] = {}
        self._faults: list[ArmFault] = []
        self._held = False
        self._op_ids = itertools.count(1)
        self._host = host
        self._httpd = _ArmServer((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> ArmEmulator:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="arm-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> ArmEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._httpd.server_port}"

    @property
    def pools_path(self) -> str:
        s = self.settings
        return (f"/subscriptions/{s.subscription_id}/resourceGroups/{s.resource_group}/providers/"
                f"Microsoft.ContainerService/managedClusters/{s.cluster_name}/agentPools")

    # --- test controls ---------------------------------------------------------------------------------
    def add_fault(self, fault: ArmFault) -> ArmFault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def hold_operations(self) -> None:
        """Keep every operation InProgress until release_operations(): a reconciler restart can happen in between.

        Operations whose time has already come finish first."""
        self._advance()
        with self._lock:
            self._held = True

    def release_operations(self) -> None:
        with self._lock:
            self._held = False
        self._advance()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        self.hold_operations()
        try:
            yield
        finally:
            self.release_operations()

    def pool(self, name: str) -> dict[str, Any] | None:
        self._advance()
        with self._lock:
            pool = self._pools.get(name)
            return json.loads(json.dumps(pool)) if pool else None

    def pool_names(self) -> list[str]:
        self._advance()
        with self._lock:
            return sorted(self._pools)

    def seed_pool(self, name: str, properties: dict[str, Any], provisioning_state: str = "Succeeded") -> None:
        """Put a pool in place directly (as if made in the portal), without an operation."""
        with self._lock:
            props = dict(properties)
            props["provisioningState"] = provisioning_state
            self._pools[name] = self._resource(name, props)

    def edit_pool(self, name: str, **properties: Any) -> None:
        """Change a pool by hand (drift), without an operation."""
        with self._lock:
            self._pools[name]["properties"].update(properties)

    def remove_pool(self, name: str) -> None:
        """Delete a pool by hand, without an operation."""
        with self._lock:
            self._pools.pop(name, None)

    def operations(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return [(op.kind, op.pool, op.status) for op in self._ops.values()]

    # --- ARM behaviour ---------------------------------------------------------------------------------
    def _resource(self, name: str, props: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"{self.pools_path}/{name}",
            "name": name,
            "type": "Microsoft.ContainerService/managedClusters/agentPools",
            "properties": props,
        }

    def _take_fault(self, method: str, pool: str | None, on_result: bool) -> ArmFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.on_result == on_result and fault.matches(method, pool):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _advance(self) -> None:
        """Finish the operations whose time has come.

        Hooks run before the operation reads as finished, so whoever sees Succeeded also sees the Nodes; other
        requests wait for them (hooks must not call this endpoint)."""
        with self._advance_lock:
            now = time.monotonic()
            with self._lock:
                if self._held:
                    return
                due = [op for op in self._ops.values()
                       if op.status == "InProgress" and now - op.started >= self.settings.operation_duration_s]
                ready = {op.id: json.loads(json.dumps(self._pools[op.pool])) for op in due
                         if op.kind != "delete" and op.fault is None and op.pool in self._pools}
            for op in due:
                if op.kind == "delete" and self.settings.on_pool_deleted:
                    self.settings.on_pool_deleted(op.pool)
                elif op.id in ready and self.settings.on_pool_ready:
                    pool = ready[op.id]
                    pool["properties"]["provisioningState"] = "Succeeded"
                    self.settings.on_pool_ready(pool)
            with self._lock:
                for op in due:
                    self._finish(op, now)

    def _finish(self, op: _Operation, now: float) -> None:
        op.ended = now
        pool = self._pools.get(op.pool)
        if op.kind == "delete":
            op.status = "Succeeded"
            self._pools.pop(op.pool, None)
        elif op.fault is not None:
            op.status = "Failed"
            op.error = {"code": op.fault.code, "message": op.fault.message}
            if pool is not None:
                pool["properties"]["provisioningState"] = "Failed"
                pool["properties"]["status"] = {"provisioningError": dict(op.error)}
        else:
            op.status = "Succeeded"
            if pool is not None:
                pool["properties"]["provisioningState"] = "Succeeded"
                pool["properties"].pop("status", None)
                pool["properties"]["powerState"] = {"code": "Running"}

    def _start_op(self, kind: str, pool: str, fault: ArmFault | None) -> _Operation:
        op = _Operation(f"{next(self._op_ids):04d}-{uuid.uuid4()}", kind, pool, time.monotonic(), fault)
        self._ops[op.id] = op
        return op

    def _op_headers(self, op: _Operation, api_version: str) -> dict[str, str]:
        s = self.settings
        base = f"{self.url}/subscriptions/{s.subscription_id}/providers/Microsoft.ContainerService/locations/{s.location}"
        return {
            "Azure-AsyncOperation": f"{base}/operations/{op.id}?api-version={api_version}",
            "Location": f"{base}/operationresults/{op.id}?api-version={api_version}",
        }

    def classify(self, method: str, path: str) -> tuple[str, str | None]:
        """(LIST | POLL | GET | PUT | DELETE, pool name or None) for a request: what faults and the log match on."""
        lpath = path.rstrip("/").lower()
        pools_path = self.pools_path.lower()
        if "/operations/" in lpath or "/operationresults/" in lpath:
            return "POLL", None
        if lpath == pools_path:
            return ("LIST" if method == "GET" else method), None
        rest = path.rstrip("/")[len(pools_path) + 1:]
        if lpath.startswith(pools_path + "/") and rest and "/" not in rest:
            return method, rest
        return method, None

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> tuple[int, dict[str, str], Any]:
        self._advance()
        api_version = (query.get("api-version") or [""])[0]
        s = self.settings
        pools_path = self.pools_path.lower()
        lpath = path.rstrip("/").lower()
        kind, pool = self.classify(method, path)
        is_pool = pool is not None

        if headers.get("Authorization", "") != f"Bearer {s.token}":
            return _error(401, "InvalidAuthenticationToken", "The access token is missing or invalid.")
        fault = self._take_fault(kind, pool, on_result=False)
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)  # the emulated server is slow; the client's deadline decides what happens
        if fault is not None and fault.status == 0:
            fault = None
        if fault is not None:
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            status, hdrs, payload = _error(fault.status, fault.code, fault.message)
            return status, {**hdrs, **extra}, payload
        if not api_version:
            return _error(400, "MissingApiVersionParameter",
                          "The api-version query parameter (?api-version=) is required for all requests.")

        op_match = re.match(r"^/subscriptions/[^/]+/providers/microsoft\.containerservice/locations/[^/]+/"
                            r"(operations|operationresults)/([^/]+)\Z", lpath)
        if op_match and method == "GET":
            return self._get_operation(op_match.group(1), path.rstrip("/").split("/")[-1])
        if lpath == pools_path and method == "GET":
            return self._list(query, api_version)
        if not is_pool or pool is None:
            if lpath.startswith(pools_path.rsplit("/agentpools", 1)[0].lower()):
                return _error(404, "NotFound", f"Unsupported path {path}")
            return _error(404, "ResourceNotFound",
                          f"The Resource 'Microsoft.ContainerService/managedClusters/{s.cluster_name}' under "
                          f"resource group '{s.resource_group}' was not found.")
        if method == "GET":
            with self._lock:
                found = self._pools.get(pool)
                if found is None:
                    return _error(404, "NotFound", f"Agent Pool not found: {pool}")
                return 200, {}, json.loads(json.dumps(found))
        if method == "PUT":
            return self._put(pool, body, api_version)
        if method == "DELETE":
            return self._delete(pool, api_version)
        return _error(405, "MethodNotAllowed", f"{method} is not supported")

    def _list(self, query: dict[str, list[str]], api_version: str) -> tuple[int, dict[str, str], Any]:
        skip = int((query.get("$skipToken") or ["0"])[0])
        with self._lock:
            names = sorted(self._pools)
            page = [json.loads(json.dumps(self._pools[n])) for n in names[skip:skip + self.settings.page_size]]
        result: dict[str, Any] = {"value": page}
        if skip + self.settings.page_size < len(names):
            result["nextLink"] = (f"{self.url}{self.pools_path}?api-version={api_version}"
                                  f"&$skipToken={skip + self.settings.page_size}")
        return 200, {}, result

    def _put(self, pool: str, body: bytes, api_version: str) -> tuple[int, dict[str, str], Any]:
        try:
            doc = json.loads(body or b"{}")
        except json.JSONDecodeError:
            return _error(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
        props = dict(doc.get("properties") or {})
        if not _POOL_NAME.fullmatch(pool):
            return _error(400, "InvalidParameter",
                          f"The value of parameter agentPoolProfile.name is invalid: {pool!r} must match ^[a-z][a-z0-9]{{0,11}}$.")
        if not props.get("vmSize"):
            return _error(400, "InvalidParameter", "The value of parameter agentPoolProfile.vmSize is invalid.")
        if int(props.get("count", 1)) < 0:
            return _error(400, "InvalidParameter", "The value of parameter agentPoolProfile.count is invalid.")
        for key in _READ_ONLY:
            props.pop(key, None)
        with self._lock:
            existing = self._pools.get(pool)
            if existing is not None:
                state = existing["properties"].get("provisioningState", "")
                running = [op for op in self._ops.values() if op.pool == pool and op.status == "InProgress"]
                if running or state not in ("Succeeded", "Failed", "Canceled"):
                    kind = running[0].kind if running else "update"
                    kind = "create" if kind == "create" else ("delete" if kind == "delete" else "update")
                    return _error(409, "OperationNotAllowed", IN_PROGRESS_MESSAGE.format(kind=kind))
                for key in _IMMUTABLE:
                    if key in props and key in existing["properties"] and props[key] != existing["properties"][key]:
                        return _error(400, "PropertyChangeNotAllowed", f"Changing property '{key}' is not allowed.")
            result_fault = self._take_fault("PUT", pool, on_result=True)
            if existing is None:
                kind, status, state = "create", 201, "Creating"
            elif existing["properties"].get("count") != props.get("count") and existing["properties"]["provisioningState"] != "Failed":
                kind, status, state = "scale", 200, "Scaling"
            else:
                kind, status, state = "update", 200, "Updating"
            props["provisioningState"] = state
            resource = self._resource(pool, props)
            self._pools[pool] = resource
            op = self._start_op(kind, pool, result_fault)
            payload = json.loads(json.dumps(resource))
        return status, self._op_headers(op, api_version), payload

    def _delete(self, pool: str, api_version: str) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            existing = self._pools.get(pool)
            if existing is None:
                return 204, {}, None
            running = [op for op in self._ops.values() if op.pool == pool and op.status == "InProgress"]
            if running and running[0].kind == "delete":
                return 202, self._op_headers(running[0], api_version), None
            if running:
                return _error(409, "OperationNotAllowed", IN_PROGRESS_MESSAGE.format(
                    kind="create" if running[0].kind == "create" else "update"))
            existing["properties"]["provisioningState"] = "Deleting"
            op = self._start_op("delete", pool, None)
        return 202, self._op_headers(op, api_version), None

    def _get_operation(self, which: str, op_id: str) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            op = self._ops.get(op_id)
            if op is None:
                return _error(404, "NotFound", f"Operation {op_id} not found")
            if which == "operations":
                doc: dict[str, Any] = {"id": op.id, "name": op.id, "status": op.status,
                                       "startTime": _iso(op.started)}
                if op.ended is not None:
                    doc["endTime"] = _iso(op.ended)
                if op.error:
                    doc["error"] = dict(op.error)
                return 200, {}, doc
            if op.status == "InProgress":
                return 202, {}, None
            if op.status == "Failed":
                status, hdrs, payload = _error(400, op.error["code"] if op.error else "Failed",
                                               op.error["message"] if op.error else "")
                return status, hdrs, payload
            pool = self._pools.get(op.pool)
            return (200, {}, json.loads(json.dumps(pool))) if pool else (204, {}, None)


def _iso(monotonic_at: float) -> str:
    wall = time.time() - (time.monotonic() - monotonic_at)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], Any]:
    return status, {"x-ms-failure-cause": "service"}, {"error": {"code": code, "message": message}}


def _make_handler(arm: ArmEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms delayed-ACK stalls

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            query = parse_qs(parts.query)
            try:
                status, headers, payload = arm.handle(self.command, parts.path, query, self.headers, body)
            except Exception as err:  # the emulator must answer like ARM would, not drop the connection
                status, headers, payload = _error(500, "InternalServerError", f"emulator error: {err}")
            method, pool = arm.classify(self.command, parts.path)
            arm.request_log.add(ArmRequest(method, parts.path, parts.query, pool, status))
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

        do_GET = do_PUT = do_DELETE = do_PATCH = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the request log is the record
            return

    return Handler


# --- nodes for pools: the on_pool_ready / on_pool_deleted hooks ------------------------------------------

def pool_node_manifests(pool: dict[str, Any], subscription_id: str = "00000000-0000-0000-0000-000000000000",
                        node_resource_group: str = "MC_rg-ml_aks-ml_eastus") -> list[dict[str, Any]]:
    """The Nodes AKS would register for a pool: VMSS-style names and providerIDs, the pool's labels and taints,
    AKS's own agentpool labels, and nvidia.com/gpu capacity from the pool's gpu.count label."""
    name = pool["name"]
    props = pool["properties"]
    digits = f"{int(hashlib.sha256(name.encode()).hexdigest(), 16) % 10**8:08d}"
    vmss = f"aks-{name}-{digits}-vmss"
    labels = {
        "agentpool": name,
        "kubernetes.azure.com/agentpool": name,
        "kubernetes.azure.com/mode": str(props.get("mode", "User")).lower(),
        "node.kubernetes.io/instance-type": props.get("vmSize", ""),
        "kubernetes.io/os": "linux",
        **(props.get("nodeLabels") or {}),
    }
    taints = []
    for taint in props.get("nodeTaints") or []:
        key_value, _, effect = taint.partition(":")
        key, _, value = key_value.partition("=")
        taints.append({"key": key, "value": value, "effect": effect})
    gpus = str((props.get("nodeLabels") or {}).get("nvidia.com/gpu.count", "0"))
    nodes = []
    for i in range(int(props.get("count") or 0)):
        node_name = f"{vmss}{i:06d}"
        nodes.append({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node_name, "labels": {**labels, "kubernetes.io/hostname": node_name}},
            "spec": {
                "providerID": f"azure:///subscriptions/{subscription_id}/resourceGroups/{node_resource_group}/providers/"
                              f"Microsoft.Compute/virtualMachineScaleSets/{vmss}/virtualMachines/{i}",
                "taints": taints,
            },
            "status": {
                "capacity": {"nvidia.com/gpu": gpus, "cpu": "24", "memory": "220Gi", "pods": "110"},
                "allocatable": {"nvidia.com/gpu": gpus, "cpu": "23", "memory": "200Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status"}],
                "nodeInfo": {"architecture": "amd64", "bootID": "00000000-0000-0000-0000-000000000001",
                             "containerRuntimeVersion": "containerd://1.7.20", "kernelVersion": "5.15.0-1071-azure",
                             "kubeProxyVersion": "v1.30.0", "kubeletVersion": "v1.30.0", "machineID": "sandbox",
                             "operatingSystem": "linux", "osImage": "Ubuntu 22.04.5 LTS",
                             "systemUUID": "00000000-0000-0000-0000-000000000001"},
            },
        })
    return nodes


class NodeApi(Protocol):
    def list_node_names(self, label_selector: str) -> list[str]: ...
    def create_node(self, body: dict[str, Any]) -> None: ...
    def delete_node(self, name: str) -> None: ...


class KubeNodeApi:
    """NodeApi over the official kubernetes client (for a sandbox ApiServer URL)."""

    def __init__(self, url: str) -> None:
        self._kube = Kube(make_api_client(url, "arm"))

    def list_node_names(self, label_selector: str) -> list[str]:
        raw: Any = self._kube.core.list_node(label_selector=label_selector, _preload_content=False)
        return [str(n["metadata"]["name"]) for n in json.loads(raw.data).get("items", [])]

    def create_node(self, body: dict[str, Any]) -> None:
        self._kube.create_node(body)  # already there (409): its status is refreshed below all the same
        # Status is a subresource: the kubelet would post it; here it comes right after the create.
        self._kube.core.patch_node_status(body["metadata"]["name"], {"status": body["status"]})

    def delete_node(self, name: str) -> None:
        self._kube.delete_node(name)


class NodeBridge:
    """Keeps a cluster's Nodes in line with the emulator's pools: pass its methods as on_pool_ready/on_pool_deleted."""

    def __init__(self, nodes: NodeApi, arm_settings: ArmSettings | None = None) -> None:
        self._nodes = nodes
        self._settings = arm_settings or ArmSettings()

    def attach(self, arm: ArmEmulator) -> NodeBridge:
        arm.settings.on_pool_ready = self.on_pool_ready
        arm.settings.on_pool_deleted = self.on_pool_deleted
        self._settings = arm.settings
        return self

    def on_pool_ready(self, pool: dict[str, Any]) -> None:
        s = self._settings
        wanted = pool_node_manifests(pool, s.subscription_id,
                                     f"MC_{s.resource_group}_{s.cluster_name}_{s.location}")
        names = {n["metadata"]["name"] for n in wanted}
        for extra in set(self._nodes.list_node_names(f"agentpool={pool['name']}")) - names:
            self._nodes.delete_node(extra)  # scaled down
        for node in wanted:
            self._nodes.create_node(node)

    def on_pool_deleted(self, name: str) -> None:
        for node in self._nodes.list_node_names(f"agentpool={name}"):
            self._nodes.delete_node(node)
