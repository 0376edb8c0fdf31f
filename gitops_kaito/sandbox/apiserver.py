"""A loopback Kubernetes API emulator on the standard library's ThreadingHTTPServer (the project's test double).

Serves discovery, built-in kinds and CRDs, watches, server-side apply and test hooks to the official client.

What it only approximates, openly:
- No authentication or authorization (RBAC): any token works. Admission is only the validating webhooks
  registered in-process (sandbox/admission/; `Sandbox` registers KAITO's Workspace webhook,
  controllers/kaito_webhook.py), called where kube-apiserver calls them, dry runs included; no mutating
  webhooks, no CEL rules (`x-kubernetes-validations` are ignored), no ValidatingAdmissionPolicy.
- No conversion webhooks: custom resources are relabelled between versions, never converted
  (what a CRD with `conversion: None` does, e.g. KAITO's Workspace v1alpha1/v1beta1).
- No garbage collector: ownerReferences are stored but never cascade; deleting a namespace deletes its
  objects synchronously (objects with finalizers keep it Terminating until they are gone).
- No controllers of its own: Deployments, Pods and Services are stored, not run (Services get a fake
  clusterIP); Nodes are whatever clients create.
- Server-side apply: field sets are tracked per manager and rendered as FieldsV1, but only
  `x-kubernetes-list-map-keys` lists (plus any `conditions` list, keyed by `type`, and a table of
  built-in merge keys such as containers/env by name) merge per item; other lists are atomic
  (`set` lists too). Conflicts are raised only against other *Apply* managers; Update managers
  silently lose fields an apply changes.
- Strategic merge patch (built-in kinds only; 415 for custom resources) is a JSON merge patch whose
  lists with a known merge key merge per item; only the `$patch: delete|replace` directives exist.
- Validation: CRD schemas through jsonschema (formats unchecked); built-in kinds only get metadata,
  label/annotation and a few type checks, nothing from their OpenAPI schemas.
- No /openapi/v2 or /openapi/v3 (404): kubectl needs `--validate=false` for apply/create.
- Request log entries are written before the reply is sent (a client that has its answer finds them).
  Faults: `Fault(status=0, delay_s=...)` only slows a request; urllib3 under the official client retries
  429/503 answers that carry Retry-After by itself.
- Watch history is bounded (`history_limit` events): older resourceVersions get a 410 ERROR event.
  `limit`/`continue` pages are one snapshot, rebuilt from that history (a continue token older than it: 410
  Expired); resourceVersion on get/list is ignored.
- Field selectors accept any dotted path with =, ==, != (a cluster accepts only a per-kind set).
- events.k8s.io/v1 Events are core/v1 Events seen with their fields renamed (one store, two shapes, as on a
  cluster); managedFields of a write through events.k8s.io name its own field names.
- Tables (`Accept: ...;as=Table`, incl. watches): custom resources print their additionalPrinterColumns, Events and
  Nodes print the API server's columns, other built-ins Name, a few columns and Age; ages are coarser than kubectl's.
- generation is kept for custom resources, CRDs and Deployments only; it bumps on any change outside
  metadata (and outside status when status is a subresource), which is what a cluster does for CRs.
- DELETE returns the object for custom resources, namespaces and objects held by finalizers, a Status
  otherwise; propagationPolicy and gracePeriodSeconds are accepted and ignored.
- BOOKMARK events (allowWatchBookmarks) every `bookmark_interval_s` of an idle stream and as it times out; no
  protobuf, no aggregated discovery (clients fall back to the legacy documents).
- `latency_s` delays every request by a fixed time before it is served (a watch once, before its headers):
  what round trips to a real API server cost, without its variance.
- `restart(compact=True)` is a restart whose watch cache starts cold: every older resourceVersion gets 410;
  `lose_watch_events(fn)` drops matching events from every watch stream (stored as usual): missed events.
- Service proxy: /api/v1/namespaces/{ns}/services/{name}[:port]/proxy/{path} calls the handler set with
  `set_proxy_handler(fn)`; fn(namespace, service, port, method, subpath, body) -> (status, headers, body)
  or None (503). subpath starts with "/" and keeps the query string.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from gitops_kaito.sandbox.builtin import ResourceType
from gitops_kaito.sandbox.errors import ApiError, not_found, status_body
from gitops_kaito.sandbox.hooks import Fault, Faults, LoggedRequest, RequestLog
from gitops_kaito.sandbox.operations import Api, Target, WriteOptions, field_manager_for, parse_body
from gitops_kaito.sandbox.registry import KUBE_VERSION
from gitops_kaito.sandbox.tables import INCLUDE_OBJECT, table

__all__ = ["ApiServer", "Fault", "ProxyHandler"]

ProxyResult = tuple[int, Mapping[str, str], bytes]
ProxyHandler = Callable[[str, str, str, str, str, bytes], ProxyResult | None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's backlog of 5 overflowed when the controllers open their watches at once: a client connecting
    # then lost its SYN and waited out the kernel's 1 s retransmission.
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], owner: ApiServer) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up (kubectl exiting, a watch cut on stop) is normal, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _DropConnection(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without NODELAY, delayed ACKs add ~40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.conn_lock:
                self.server.connections.discard(self.connection)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    # -------------------------------------------------------------------------------------------

    def _handle(self) -> None:
        owner = self.server.owner
        started = time.time()
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type") or ""
        user_agent = self.headers.get("User-Agent") or ""
        self._status = 0
        self._verb = ""
        self._logged = False
        self._log_entry = (self.command, path, split.query, user_agent, started, ctype)
        try:
            if owner.latency_s > 0:
                owner._stopping.wait(owner.latency_s)
            fault = owner.faults.take(self.command, path, split.query)
            if fault is not None:
                self._apply_fault(fault)
            if fault is None or fault.status == 0:
                self._route(path, query, body, ctype, user_agent, split.query)
        except _DropConnection:
            self.close_connection = True
            self._status = 0
        except ApiError as err:
            self._send_json(err.code, err.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # an emulator bug must surface as a 500, not a hung client
            self._send_json(500, status_body(500, "InternalError", f"emulator error: {exc!r}"))
        self._log()

    def _log(self) -> None:
        """Record the request once: at its end, or when a watch stream starts."""
        if self._logged:
            return
        self._logged = True
        method, path, query, user_agent, started, ctype = self._log_entry
        self.server.owner.request_log.add(
            LoggedRequest(method, path, query, user_agent, self._status, started, self._verb, ctype)
        )

    def _apply_fault(self, fault: Fault) -> None:
        if fault.delay_s:
            self.server.owner._stopping.wait(fault.delay_s)
        while fault.hold is not None and not fault.hold.is_set() and not self.server.owner._stopping.is_set():
            fault.hold.wait(0.1)  # and wakes for a stopping server, which must not hang on a test's gate
        if fault.drop_connection:
            self._verb = "fault"
            self._log()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            raise _DropConnection()
        if fault.status:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
                      409: "Conflict", 404: "NotFound", 403: "Forbidden", 410: "Expired"}.get(fault.status, "Unknown")
            self._verb = "fault"
            self._send_json(fault.status, status_body(fault.status, reason, fault.message), headers)

    def _send_json(self, code: int, doc: Any, headers: Mapping[str, str] | None = None) -> None:
        payload = json.dumps(doc, separators=(",", ":")).encode()
        self._send_raw(code, payload, "application/json", headers)

    def _send_raw(self, code: int, payload: bytes, ctype: str, headers: Mapping[str, str] | None = None) -> None:
        self._status = code
        self._log()  # before the reply: a client that has its answer also finds the log entry
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    # -------------------------------------------------------------------------------------------

    def _route(self, path: str, query: dict[str, str], body: bytes, ctype: str, user_agent: str, raw_query: str) -> None:
        api = self.server.owner.api
        parts = [p for p in path.split("/") if p]
        self._verb = "get"
        if not parts:
            self._send_json(200, {"paths": ["/api", "/api/v1", "/apis", "/version", "/healthz"]})
            return
        head = parts[0]
        if head in ("healthz", "readyz", "livez"):
            self._send_raw(200, b"ok", "text/plain")
            return
        if head == "version":
            self._send_json(200, KUBE_VERSION)
            return
        if head == "api":
            if len(parts) == 1:
                host, port = str(self.server.server_address[0]), int(self.server.server_address[1])
                self._send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{host}:{port}"}]})
                return
            group, version, rest = "", parts[1], parts[2:]
        elif head == "apis":
            with api.lock:
                if len(parts) == 1:
                    groups = [g for g in (api.registry.api_group(n) for n in sorted(api.registry.group_versions())) if g]
                    self._send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
                    return
                if len(parts) == 2:
                    found = api.registry.api_group(parts[1])
                    if found is None:
                        raise ApiError(404, "the server could not find the requested resource")
                    self._send_json(200, {"kind": "APIGroup", "apiVersion": "v1", **found})
                    return
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource")
        if not rest:
            with api.lock:
                doc = api.registry.resource_list(group, version)
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource")
            self._send_json(200, doc)
            return
        self._resource(group, version, rest, query, body, ctype, user_agent, raw_query)

    def _scale(self, api: Any, t: Any, namespace: str, name: str, body: bytes, ctype: str, query: dict[str, str],
               user_agent: str) -> None:
        """GET/PUT/PATCH <plural>/<name>/scale, for CRDs that declare the scale subresource."""
        with api.lock:
            info = api.registry.crd(t)
        if info is None or not info.scale or (t.namespaced and not namespace):
            raise ApiError(404, "the server could not find the requested resource")
        target = Target(t, namespace, name, "")
        opts = WriteOptions(query.get("dryRun") == "All", field_manager_for(query, user_agent), False)
        if self.command == "GET":
            self._verb = "get"
            self._send_json(200, api.get_scale(target))
        elif self.command in ("PUT", "PATCH"):
            self._verb = "update" if self.command == "PUT" else "patch"
            self._send_json(200, api.write_scale(target, self.command, body, ctype, opts))
        else:
            raise ApiError(405, f"{self.command} is not supported on {t.plural}/scale", "MethodNotAllowed")

    def _resource(self, group: str, version: str, rest: list[str], query: dict[str, str], body: bytes, ctype: str,
                  user_agent: str, raw_query: str) -> None:
        api = self.server.owner.api
        watch = query.get("watch") in ("1", "true", "True")
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        with api.lock:
            t = api.registry.lookup(group, version, plural)
        if t is None:
            raise ApiError(404, "the server could not find the requested resource")
        if not group and plural == "services" and sub == "proxy" and namespace:
            self._proxy(namespace, name, "/" + "/".join(rest[3:]), raw_query, body, t)
            return
        if sub == "scale" and len(rest) == 3:
            self._scale(api, t, namespace, name, body, ctype, query, user_agent)
            return
        if len(rest) > 3 or (sub and sub != "status"):
            raise ApiError(404, "the server could not find the requested resource")
        if sub == "status" and not t.status_subresource:
            raise ApiError(404, "the server could not find the requested resource")
        if not t.namespaced and namespace:
            raise ApiError(404, "the server could not find the requested resource")
        target = Target(t, namespace, name, sub)
        dry_run = query.get("dryRun") == "All"
        if query.get("dryRun") and not dry_run:
            raise ApiError(400, f"unsupported dryRun value: {query['dryRun']!r} (only All is supported)")
        opts = WriteOptions(dry_run, field_manager_for(query, user_agent), query.get("force") in ("true", "1"))
        if self.command == "PATCH" and (ctype.split(";")[0].strip() == "application/apply-patch+yaml"):
            opts = WriteOptions(dry_run, query.get("fieldManager", ""), opts.force)
        method = self.command
        if method == "GET":
            if name:
                self._verb = "get"
                obj = api.get(target)
                self._reply_object(200, t, obj, single=True, query=query)
            elif watch:
                self._verb = "watch"
                self._watch(target, query)
            else:
                self._verb = "list"
                self._reply_object(200, t, api.list_objects(target, query), single=False, query=query)
            return
        if method == "POST":
            self._verb = "create"
            if name:
                raise ApiError(405, "POST is not allowed on a named object", "MethodNotAllowed")
            if t.namespaced and not namespace:
                raise ApiError(404, "the server could not find the requested resource")
            self._send_json(201, api.create(target, parse_body(body), opts))
            return
        if not name and method != "DELETE":
            raise ApiError(405, f"{method} requires a name", "MethodNotAllowed")
        if method == "PUT":
            self._verb = "update"
            self._send_json(200, api.update(target, parse_body(body), opts))
        elif method == "PATCH":
            self._verb = "patch"
            code, obj = api.patch(target, body, ctype, opts)
            self._send_json(code, obj)
        elif method == "DELETE":
            options = parse_body(body) if body.strip() else {}
            dry_run = dry_run or "All" in ((options or {}).get("dryRun") or [])
            if not name:
                self._verb = "deletecollection"
                self._send_json(200, api.delete_collection(target, query, dry_run))
                return
            self._verb = "delete"
            obj = api.delete(target, options or {}, dry_run)
            if t.custom or (obj["metadata"].get("deletionTimestamp") and obj["metadata"].get("finalizers")) \
                    or t.kind == "Namespace":
                self._send_json(200, obj)
            else:
                self._send_json(200, {**status_body(200, "", ""), "status": "Success",
                                      "details": {"name": name, "group": group, "kind": plural,
                                                  "uid": obj["metadata"].get("uid")}})
        else:
            raise ApiError(405, f"method {method} not allowed", "MethodNotAllowed")

    def _reply_object(self, code: int, t: ResourceType, doc: dict[str, Any], single: bool,
                      query: dict[str, str]) -> None:
        table_of = self._table_of(t, query)
        if table_of is not None:
            items = [doc] if single else doc["items"]
            self._send_json(code, table_of(items, {} if single else doc["metadata"], True))
            return
        self._send_json(code, doc)

    def _table_of(self, t: ResourceType, query: dict[str, str]
                  ) -> Callable[[list[dict[str, Any]], dict[str, Any], bool], dict[str, Any]] | None:
        """How to answer as a Table (items, list metadata, with headers) when the client asked for one, else None."""
        if "as=Table" not in (self.headers.get("Accept") or ""):
            return None
        include = query.get("includeObject") or "Metadata"
        if include not in INCLUDE_OBJECT:
            raise ApiError(400, f"includeObject: unsupported value {include!r} (None, Metadata, Object)")
        api = self.server.owner.api
        with api.lock:
            info = api.registry.crd(t)
        columns = info.printer_columns if info is not None else None
        return lambda items, meta, headers: table(t, items, columns, meta, include, headers)

    # -------------------------------------------------------------------------------------------

    def _watch(self, target: Target, query: dict[str, str]) -> None:
        owner = self.server.owner
        started = False
        table_of = self._table_of(target.type, query)
        headers_sent = False

        def emit(event: dict[str, Any]) -> bool:
            nonlocal headers_sent
            begin()
            obj = event.get("object") or {}
            if table_of is not None and event.get("type") in ("ADDED", "MODIFIED", "DELETED") and "metadata" in obj:
                # Each event's object is a Table of its one row; column definitions only on the first (what the API
                # server's watch does), so `kubectl get -w` keeps printing the same columns.
                event = {**event, "object": table_of([obj], {"resourceVersion": obj["metadata"].get(
                    "resourceVersion", "")}, not headers_sent)}
                headers_sent = True
            data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
            try:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            except OSError:
                return False
            return True

        def begin() -> None:
            nonlocal started
            if started:
                return
            self._status = 200
            self._log()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            self.wfile.flush()
            started = True

        owner.api.watch(target, query, emit, owner._stopping, on_ready=begin)
        begin()  # nothing happened before the timeout: still a valid, empty watch stream
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _proxy(self, namespace: str, service: str, subpath: str, raw_query: str, body: bytes, t: ResourceType) -> None:
        owner = self.server.owner
        self._verb = "proxy"
        pieces = service.split(":")
        if len(pieces) == 3:
            name, port = pieces[1], pieces[2]
        elif len(pieces) == 2:
            name, port = pieces
        else:
            name, port = service, ""
        with owner.api.lock:
            if owner.api.store.get(t.storage_key, namespace, name) is None:
                raise not_found("services", "", name)
        handler = owner._proxy_handler
        if raw_query:
            subpath = f"{subpath}?{raw_query}"
        result = handler(namespace, name, port, self.command, subpath, body) if handler else None
        if result is None:
            raise ApiError(503, f'no endpoints available for service "{name}"', "ServiceUnavailable")
        code, headers, payload = result
        hdrs = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "content-type")}
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/json")
        self._send_raw(code, payload, ctype, hdrs)


class ApiServer:
    """The emulator: `start()`, `url`, `stop()`, `write_kubeconfig()`, plus test hooks."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, history_limit: int = 50_000,
                 latency_s: float = 0.0, bookmark_interval_s: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.latency_s = latency_s  # added to every request before it is served
        self.api = Api(history_limit)
        self.api.bookmark_interval_s = bookmark_interval_s
        self.request_log = RequestLog()
        self.faults = Faults()
        self._proxy_handler: ProxyHandler | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> ApiServer:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            # stop() waits for the next poll; tests start and stop hundreds of emulators.
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="sandbox-apiserver", daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop serving: ends watches, closes open connections, frees the port."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        self.api.store.close()
        server.shutdown()
        with server.conn_lock:
            conns = list(server.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def restart(self, compact: bool = True) -> ApiServer:
        """Stop serving (every connection and watch cut) and serve again on the same port with the same objects.
        compact: the history goes too, so a watch resumed from before the restart gets 410 Gone."""
        self.stop()
        if compact:
            self.api.store.compact()
        self.api.store.reopen()
        self._stopping = threading.Event()
        return self.start()

    def lose_watch_events(self, fn: Callable[[str, dict[str, Any]], bool] | None) -> None:
        """Events (type, object) for which fn says True never reach a watcher; None delivers everything again."""
        self.api.lose_event = fn

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_proxy_handler(self, fn: ProxyHandler | None) -> None:
        self._proxy_handler = fn

    def kubeconfig(self, context: str = "sandbox", namespace: str | None = None) -> dict[str, Any]:
        ctx: dict[str, Any] = {"cluster": "sandbox", "user": "sandbox"}
        if namespace:
            ctx["namespace"] = namespace
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "sandbox", "user": {"token": "sandbox-token"}}],
            "contexts": [{"name": context, "context": ctx}],
            "current-context": context,
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | Path, context: str = "sandbox", namespace: str | None = None) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(self.kubeconfig(context, namespace), sort_keys=False))
        return out
