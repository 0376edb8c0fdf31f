"""Shared pieces of the fault-injection suite (tests/test_faults_*.py): an emulator world behind a cuttable proxy.

The reconciler talks to the API emulator through `CutProxy`, so a test can make the API server vanish
(connection refused, open connections reset) mid-pass and come back on the same address with its state intact.
"""

from __future__ import annotations

import base64
import http.server
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import git
import yaml
from kubernetes import client

from gitops_kaito.adapters.gitsource import GitAuth, GitSource, SourceSpec
from gitops_kaito.adapters.kube import ApiRetry, Kube
from gitops_kaito.model.ownership import LABEL_MODEL
from gitops_kaito.reconcile.gitsync import GitPassResult, GitSyncSettings, run_git_pass
from gitops_kaito.sandbox import Sandbox, SandboxSettings
from gitops_kaito.sandbox.apiserver import ApiServer
from tests.fixtures_cluster import wait_until
from tests.gitfixtures import Developer, make_remote, model_file

UA = "gitops-kaito/"
WRITES = ("create", "update", "patch", "delete", "deletecollection")
# Fast retries: the suite tests what is retried, not how long the real backoff waits.
FAST_RETRY = ApiRetry(attempts=4, base_delay_s=0.01, max_delay_s=0.05, max_retry_after_s=0.05,
                         request_timeout_s=2.0)
# Server-managed metadata that differs between two clusters holding the same desired state.
_VOLATILE_META = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation",
                  "deletionTimestamp", "deletionGracePeriodSeconds")
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

__all__ = ["FAST_RETRY", "UA", "WRITES", "CutProxy", "GitHttpServer", "GitWorld", "KubeWorld", "model_file", "normalize_status", "wait_until"]


class CutProxy:
    """A loopback TCP forwarder to `target_port` that can be cut (refuse + reset) and restored on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._listener is not None

    def restore(self) -> None:
        """Listen again on the same port (ephemeral on first start)."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, args=(listener, self._stop), daemon=True,
                                        name="fault-proxy")
        self._thread.start()

    def cut(self) -> None:
        """The API server goes away: new connections are refused and open ones are reset."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                downstream, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                downstream.close()
                continue
            for s in (downstream, upstream):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=_pump, args=(a, b), daemon=True, name="fault-proxy-pump").start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class KubeWorld:
    """The emulator with our CRDs and namespace `ml` (no simulated controllers: nothing moves but the reconciler),
    a repository directory, the reconciler's Kube client through a CutProxy, and an admin client straight to it."""

    def __init__(self, tmp: Path, *, retry: ApiRetry = FAST_RETRY, sleep: Any = None) -> None:
        self._sandbox = Sandbox(SandboxSettings(controllers=False, namespaces=("ml",))).start()
        self.server: ApiServer = self._sandbox.server
        self.proxy = CutProxy(self.server.port)
        self.kubeconfig = tmp / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fault",
            "clusters": [{"name": "fault", "cluster": {"server": self.proxy.url}}],
            "users": [{"name": "fault", "user": {"token": "sandbox-token"}}],
            "contexts": [{"name": "fault", "context": {"cluster": "fault", "user": "fault"}}]}))
        kwargs: dict[str, Any] = {"retry": retry}
        if sleep is not None:
            kwargs["sleep"] = sleep
        self.kube = Kube.connect(self.kubeconfig, **kwargs)
        configuration = client.Configuration()
        configuration.host = self.server.url
        self.admin = client.ApiClient(configuration)
        self.admin.user_agent = "fault-tests-admin/1.0"
        self.repo = tmp / "repo"
        (self.repo / "models" / "ml").mkdir(parents=True)

    def close(self) -> None:
        self.proxy.cut()
        self.kube.close()
        self.admin.close()
        self._sandbox.stop()

    def __enter__(self) -> KubeWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the repository ------------------------------------------------------------------------------------
    def model(self, name: str, model: str = "phi-4-mini-instruct", extra: str = "", note: str = "") -> Path:
        """Write models/ml/<name>.yaml; `extra` goes under spec, `note` becomes a Workspace annotation (a change
        that patches the Workspace itself, where a config change only patches the ConfigMap)."""
        text = model_file(name, model) + extra
        if note:
            text = text.replace("  namespace: ml\n", f"  namespace: ml\n  annotations: {{team/note: {note!r}}}\n")
        path = self.repo / "models" / "ml" / f"{name}.yaml"
        path.write_text(text)
        return path

    def models(self, names: Iterable[str]) -> None:
        for name in names:
            self.model(name)

    # -- the cluster, as seen by an admin (never through the proxy) ----------------------------------------
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.admin)

    def workspace(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom().get_namespaced_custom_object(  # type: ignore[no-any-return]
                "kaito.sh", "v1beta1", "ml", "workspaces", name)
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise

    def workspaces(self) -> set[str]:
        body = self.custom().list_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "workspaces")
        return {i["metadata"]["name"] for i in body["items"]}

    def configmaps(self) -> set[str]:
        items = client.CoreV1Api(self.admin).list_namespaced_config_map("ml").items
        return {i.metadata.name for i in items if i.metadata.name != "kube-root-ca.crt"}

    def missing(self, names: Iterable[str]) -> list[str]:
        """Workspaces of these models that are NOT in the cluster (the prune check of every faulty pass)."""
        have = self.workspaces()
        return sorted(n for n in names if n not in have)

    def snapshot(self) -> dict[str, Any]:
        """Everything the reconciler owns, keyed by kind/ns/name, minus server-managed metadata."""
        out: dict[str, Any] = {}
        for group, version, plural, kind in (("kaito.sh", "v1beta1", "workspaces", "Workspace"),
                                             ("", "v1", "configmaps", "ConfigMap")):
            if group:
                items = self.custom().list_cluster_custom_object(group, version, plural)["items"]
            else:
                items = [self.admin.sanitize_for_serialization(i)
                         for i in client.CoreV1Api(self.admin).list_config_map_for_all_namespaces().items]
            for item in items:
                meta = dict(item.get("metadata") or {})
                if LABEL_MODEL not in (meta.get("labels") or {}):
                    continue
                for key in _VOLATILE_META:
                    meta.pop(key, None)
                body = {k: v for k, v in item.items() if k not in ("metadata", "status")}
                out[f"{kind}/{meta.get('namespace', '')}/{meta['name']}"] = {"metadata": meta, **body}
        return out

    # -- the reconciler's traffic -------------------------------------------------------------------------
    def requests(self, verbs: Iterable[str] | None = None, since: float = 0.0) -> list[Any]:
        return [e for e in self.server.request_log.select(user_agent_prefix=UA, verbs=verbs) if e.time >= since]

    def writes(self, since: float = 0.0) -> int:
        """Writes to objects. Events are not counted: the connection's sender threads post a pass's Events after it
        returns, so one pass's could land after the next one's mark."""
        return len([e for e in self.requests(WRITES, since) if not e.path.endswith("/events")])


def normalize_status(files: dict[str, str]) -> dict[str, Any]:
    """Status files with their timestamps blanked: two runs at different times must compare equal."""
    out: dict[str, Any] = {}
    for path, text in files.items():
        if path.endswith((".yaml", ".yml")):
            doc = yaml.safe_load(text) or {}
            if isinstance(doc, dict):
                doc.pop("since", None)
            out[path] = doc
        else:
            out[path] = _ISO.sub("<time>", text)
    return out


class GitHttpServer:
    """Smart-HTTP git on loopback (git http-backend as CGI) with Basic auth that a test can revoke.

    `token` is what the server accepts; `refuse` = "all" answers 401 to everything, "push" 403 to pushes only.
    """

    def __init__(self, root: Path, token: str, username: str = "x-access-token") -> None:
        self.root = root
        self.token = token
        self.username = username
        self.refuse = ""
        self.requests: list[tuple[str, str, int]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                path, _, query = self.path.partition("?")
                status = server._gate(self.headers.get("Authorization") or "", path, query)
                if status:
                    server.requests.append((self.command, self.path, status))
                    self.send_response(status)
                    if status == 401:
                        self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                env = {**os.environ, "GIT_PROJECT_ROOT": str(server.root), "GIT_HTTP_EXPORT_ALL": "1",
                       "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
                       "CONTENT_TYPE": self.headers.get("Content-Type") or "", "CONTENT_LENGTH": str(len(body)),
                       "REMOTE_USER": server.username, "REMOTE_ADDR": "127.0.0.1",
                       "GIT_PROTOCOL": self.headers.get("Git-Protocol") or "",
                       "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding") or ""}
                out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                                     check=False).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                if not _:
                    head, _, payload = out.partition(b"\n\n")
                headers = [ln.split(":", 1) for ln in head.decode().splitlines() if ":" in ln]
                code = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
                server.requests.append((self.command, self.path, code))
                self.send_response(code)
                for k, v in headers:
                    if k.lower() not in ("status", "content-length"):
                        self.send_header(k, v.strip())
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fault-git-http")
        self._thread.start()

    def url(self, repo: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{repo}"

    def _gate(self, authorization: str, path: str, query: str) -> int:
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
        if self.refuse == "all" or authorization != expected:
            return 401
        pushing = path.endswith("/git-receive-pack") or "service=git-receive-pack" in query
        if self.refuse == "push" and pushing:
            return 403
        return 0

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class GitWorld:
    """A KubeWorld plus a bare remote, a developer clone and the git-integrated pass's settings."""

    def __init__(self, tmp: Path, *, url: str | None = None, auth: GitAuth | None = None) -> None:
        self.tmp = tmp
        self.kw = KubeWorld(tmp)
        self.remote = make_remote(tmp)
        self.dev = Developer(self.remote, tmp / "dev")
        self.dev_commits: list[str] = []
        self.dev.write("README.md", "models\n")
        self.commit("init")
        self.settings = GitSyncSettings(url=url or self.remote.url, cache_dir=tmp / "cache",
                                        auth=auth or GitAuth())

    def close(self) -> None:
        self.kw.close()

    def commit(self, message: str, **files: str) -> str:
        """A developer commit of models/ml/<name>.yaml per keyword (value: the preset), pushed."""
        for name, preset in files.items():
            self.dev.write(f"models/ml/{name}.yaml", model_file(name, preset))
        sha = self.dev.commit(message)
        self.dev_commits.append(sha)
        return sha

    def run(self, now: str = "2025-01-01T00:00:00Z", **kwargs: Any) -> GitPassResult:
        kwargs.setdefault("sleep", lambda s: None)
        return run_git_pass(self.settings, self.kw.kube, now=now, **kwargs)

    def cache(self) -> Path:
        return GitSource(SourceSpec(self.settings.url), self.settings.cache_dir).path

    def lost_commits(self, commits: Iterable[str] | None = None, branch: str = "main") -> list[str]:
        """Developer commits that are not in the remote branch's history (must be none)."""
        repo = git.Repo(self.remote.bare)
        lost = []
        for sha in self.dev_commits if commits is None else commits:
            try:
                repo.git.merge_base("--is-ancestor", sha, branch)
            except git.GitCommandError:
                lost.append(sha)
        return lost

    def status_commits(self, branch: str = "main") -> list[str]:
        return [sha for sha, _, subject in (ln.partition(" ") for ln in self.remote.log(branch))
                if subject.startswith("status: ")]
