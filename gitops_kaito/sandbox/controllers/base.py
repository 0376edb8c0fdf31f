"""The loop every simulated controller runs: level-triggered passes, woken by watch events or a resync.

Controllers speak to the API only through the official kubernetes client over HTTP, like real ones.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from gitops_kaito.sandbox.controllers.failures import FailureBook
from gitops_kaito.sandbox.controllers.timing import Timing

log = logging.getLogger(__name__)

USER_AGENT_PREFIX = "gitops-kaito-sandbox/"
ERROR_BACKOFF_S = 0.2

T = TypeVar("T")


def make_api_client(url: str, controller: str) -> client.ApiClient:
    """A client for the sandbox's URL that identifies the controller in the request log."""
    config = client.Configuration()
    config.host = url
    api = client.ApiClient(config)
    api.user_agent = f"{USER_AGENT_PREFIX}{controller}"
    return api


class Kube:
    """Dict-in, dict-out calls the controllers need; 404 and 409 are answers, not errors."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    # custom resources -----------------------------------------------------------------------
    def list_custom(self, group: str, version: str, plural: str, label_selector: str = "") -> list[dict[str, Any]] | None:
        """All objects of a kind across namespaces; None when the kind is not served."""
        out: Any = _answer(404, lambda: self.custom.list_cluster_custom_object(
            group, version, plural, label_selector=label_selector))
        return None if out is None else list(out.get("items", []))

    def get_custom(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
        """One cluster-scoped object by name; None when it (or its kind) does not exist."""
        out: Any = _answer(404, lambda: self.custom.get_cluster_custom_object(group, version, plural, name))
        return None if out is None else dict(out)

    def create_custom(self, group: str, version: str, plural: str, body: dict[str, Any],
                      namespace: str | None = None) -> dict[str, Any] | None:
        def create() -> Any:
            if namespace:
                return self.custom.create_namespaced_custom_object(group, version, namespace, plural, body)
            return self.custom.create_cluster_custom_object(group, version, plural, body)

        out = _answer(409, create)
        return None if out is None else dict(out)

    def patch_custom(self, group: str, version: str, plural: str, name: str, patch: dict[str, Any],
                     namespace: str | None = None, status: bool = False) -> bool:
        """JSON merge patch; False when the object is gone."""
        kw: dict[str, Any] = {"_content_type": "application/merge-patch+json"}

        def call() -> None:
            if namespace and status:
                self.custom.patch_namespaced_custom_object_status(group, version, namespace, plural, name, patch, **kw)
            elif namespace:
                self.custom.patch_namespaced_custom_object(group, version, namespace, plural, name, patch, **kw)
            elif status:
                self.custom.patch_cluster_custom_object_status(group, version, plural, name, patch, **kw)
            else:
                self.custom.patch_cluster_custom_object(group, version, plural, name, patch, **kw)

        return _done(404, call)

    def delete_custom(self, group: str, version: str, plural: str, name: str, namespace: str | None = None) -> None:
        if namespace:
            _done(404, lambda: self.custom.delete_namespaced_custom_object(group, version, namespace, plural, name))
        else:
            _done(404, lambda: self.custom.delete_cluster_custom_object(group, version, plural, name))

    # core --------------------------------------------------------------------------------------
    def _raw(self, resp: Any) -> Any:
        return json.loads(resp.data)

    def list_nodes(self) -> list[dict[str, Any]]:
        return list(self._raw(self.core.list_node(_preload_content=False)).get("items", []))

    def create_node(self, body: dict[str, Any]) -> bool:
        return _done(409, lambda: self.core.create_node(cast(Any, body)))

    def patch_node_status(self, name: str, patch: dict[str, Any]) -> bool:
        return _done(404, lambda: self.core.patch_node_status(name, patch,
                                                              _content_type="application/merge-patch+json"))

    def delete_node(self, name: str) -> None:
        _done(404, lambda: self.core.delete_node(name))

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        resp = _answer(404, lambda: self.core.read_namespaced_config_map(name, namespace, _preload_content=False))
        return None if resp is None else dict(self._raw(resp))

    def service_exists(self, namespace: str, name: str) -> bool:
        return _done(404, lambda: self.core.read_namespaced_service(name, namespace, _preload_content=False))

    def create_service(self, namespace: str, body: dict[str, Any]) -> None:
        _done(409, lambda: self.core.create_namespaced_service(namespace, cast(Any, body)))

    def delete_service(self, namespace: str, name: str) -> None:
        _done(404, lambda: self.core.delete_namespaced_service(name, namespace))


def _answer(tolerated: int, call: Callable[[], T]) -> T | None:
    """The call's answer, or None when it fails with `tolerated` (404: gone or not served, 409: exists)."""
    try:
        return call()
    except ApiException as err:
        if err.status == tolerated:
            return None
        raise


def _done(tolerated: int, call: Callable[[], object]) -> bool:
    """True when the call succeeds, False when it fails with `tolerated`."""
    try:
        call()
    except ApiException as err:
        if err.status == tolerated:
            return False
        raise
    return True


class Controller:
    """A controller thread plus one watch thread per watched kind; subclasses implement reconcile()."""

    name = "controller"

    def __init__(self, url: str, timing: Timing, failures: FailureBook) -> None:
        self.api = make_api_client(url, self.name)
        self.kube = Kube(self.api)
        self.timing = timing
        self.failures = failures
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: list[Any] = []
        self._lock = threading.Lock()
        self._since: dict[tuple[str, str], float] = {}
        self.passes = 0

    # subclass API -----------------------------------------------------------------------------
    def watched(self) -> list[Callable[..., Any]]:
        """List functions (with a `watch` parameter) whose events should trigger a pass."""
        return []

    def reconcile(self) -> float | None:
        """One level-triggered pass over everything; returns seconds until another pass is wanted."""
        raise NotImplementedError

    # timing helpers ----------------------------------------------------------------------------
    def waited(self, key: str, step: str, delay: float) -> float:
        """0 once `delay` seconds have passed since this (object, step) was first seen, else the rest."""
        now = time.monotonic()
        start = self._since.setdefault((key, step), now)
        return max(0.0, start + delay - now)

    def forget(self, key: str, step: str | None = None) -> None:
        for k in [k for k in self._since if k[0] == key and (step is None or k[1] == step)]:
            self._since.pop(k, None)

    # lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        loop = threading.Thread(target=self._run, name=f"sandbox-{self.name}", daemon=True)
        self._threads.append(loop)
        for fn in self.watched():
            t = threading.Thread(target=self._watch, args=(fn,), name=f"sandbox-{self.name}-watch", daemon=True)
            self._threads.append(t)
        for t in self._threads:
            t.start()

    def signal_stop(self) -> None:
        """Ask the threads to end and cut open watch streams; returns at once."""
        self._stop.set()
        self._kick.set()
        with self._lock:
            responses = list(self._responses)
        for resp in responses:
            _close(resp)

    def stop(self, timeout: float = 3.0) -> None:
        self.signal_stop()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.api.close()

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def kick(self) -> None:
        self._kick.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.reconcile()
                self.passes += 1
            except Exception as err:  # keep going like a controller would, after a short back-off
                if self._stop.is_set():
                    return
                log.debug("%s pass failed: %s", self.name, err)
                delay = ERROR_BACKOFF_S
            wait = self.timing.resync_s if delay is None else min(delay, self.timing.resync_s)
            if wait > 0:
                self._kick.wait(wait)
            self._kick.clear()

    def _watch(self, fn: Callable[..., Any]) -> None:
        """Kick a pass on every event. The response is kept so stop() can cut a blocked read at once."""
        while not self._stop.is_set():
            resp: Any = None
            try:
                resp = fn(watch=True, timeout_seconds=self.timing.watch_timeout_s, _preload_content=False)
                with self._lock:
                    self._responses.append(resp)
                if self._stop.is_set():
                    break
                for line in watch.watch.iter_resp_lines(resp):
                    if line.strip():
                        self._kick.set()
                    if self._stop.is_set():
                        break
            except Exception as err:
                if not self._stop.is_set():
                    log.debug("%s watch ended: %s", self.name, err)
                    self._stop.wait(ERROR_BACKOFF_S)
            finally:
                if resp is not None:
                    with self._lock:
                        if resp in self._responses:
                            self._responses.remove(resp)
                    _close(resp)


def _close(resp: Any) -> None:
    try:
        resp.shutdown()  # urllib3 >= 2.3: unblocks a read in another thread
    except Exception:
        pass
    try:
        resp.release_conn()
    except Exception:
        pass
