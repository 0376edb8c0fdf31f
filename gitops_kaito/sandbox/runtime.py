"""Sandbox: the API emulator plus the project's CRDs and the simulated KAITO, Karpenter and model server.

`with Sandbox(SandboxSettings(speed="fast")) as sb:` gives sb.url and sb.kubeconfig_path for any client.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from gitops_kaito.model.resources import data_path
from gitops_kaito.repo.yamlsource import FAST_LOADER
from gitops_kaito.sandbox.apiserver import ApiServer, ProxyHandler
from gitops_kaito.sandbox.controllers import (
    ChaosController,
    Controller,
    Failure,
    FailureBook,
    KaitoController,
    KarpenterController,
    ModelServer,
    Timing,
)
from gitops_kaito.sandbox.controllers.base import make_api_client
from gitops_kaito.sandbox.controllers.gpus import gpu_shape
from gitops_kaito.sandbox.controllers.inferenceset import InferenceSetController
from gitops_kaito.sandbox.controllers.kaito_webhook import NAME as WORKSPACE_WEBHOOK
from gitops_kaito.sandbox.controllers.kaito_webhook import workspace_webhook
from gitops_kaito.sandbox.controllers.karpenter import node_status
from gitops_kaito.sandbox.controllers.ragengine import RagEngineController, RagServer

log = logging.getLogger(__name__)


def chain_proxies(*handlers: ProxyHandler) -> ProxyHandler:
    """One service-proxy handler from several: the first that knows the Service answers (model servers, then RAG
    engines); None from all of them is the emulator's 503."""
    def handle(namespace: str, service: str, port: Any, method: str, subpath: str, body: Any) -> Any:
        for handler in handlers:
            reply = handler(namespace, service, port, method, subpath, body)
            if reply is not None:
                return reply
        return None
    return handle

SPEEDS = ("fast", "demo")
NODE_PROVISIONING = ("nap", "byo", "karpenter")
CRD_READY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SandboxSettings:
    """How a sandbox runs. speed: fast (tests) | demo; node_provisioning: nap (KAITO creates NodeClaims, its
    gpu-provisioner mode) | karpenter (KAITO creates a NodePool per Workspace, Karpenter its NodeClaims) | byo."""

    speed: str = "fast"
    node_provisioning: str = "nap"
    host: str = "127.0.0.1"
    port: int = 0
    kubeconfig_path: Path | None = None   # default: a file in a temporary directory removed on stop()
    failures: tuple[Failure, ...] = ()    # injected from the start; more with Sandbox.inject()
    cloud: str = "azure"
    timing: Timing | None = None          # overrides the speed's timing
    crd_dir: Path | None = None           # default: deploy/crds
    controllers: bool = True              # False: the emulator and CRDs only (no KAITO: no webhook either)
    admission: bool = True                # KAITO's validating webhook refuses what a real KAITO's would
    namespaces: tuple[str, ...] = field(default=("default",))
    latency_s: float = 0.0                # added to every API request (what a real API server's round trip costs)

    def __post_init__(self) -> None:
        if self.speed not in SPEEDS:
            raise ValueError(f"speed must be one of {', '.join(SPEEDS)}, not {self.speed!r}")
        if self.node_provisioning not in NODE_PROVISIONING:
            raise ValueError(f"node_provisioning must be one of {', '.join(NODE_PROVISIONING)}, "
                             f"not {self.node_provisioning!r}")

    @property
    def effective_timing(self) -> Timing:
        return self.timing or Timing.for_speed(self.speed)


class Sandbox:
    """Emulator + CRDs + simulated controllers + a kubeconfig. Start with `with` or start()/stop()."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.server = ApiServer(host=self.settings.host, port=self.settings.port, latency_s=self.settings.latency_s)
        self.failures = FailureBook(self.settings.failures)
        self.controllers: list[Controller] = []
        self.model_server: ModelServer | None = None
        self.rag_server: RagServer | None = None
        self.proxy_handler: ProxyHandler | None = None  # what the service proxy calls: model servers, RAG engines
        self._tmpdir: Path | None = None
        self._kubeconfig: Path | None = None
        self._api: client.ApiClient | None = None
        self._started = False

    # lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> Sandbox:
        if self._started:
            return self
        self.server.start()
        self._started = True
        try:
            self._api = make_api_client(self.url, "setup")
            self._install_crds()
            for ns in self.settings.namespaces:
                self.ensure_namespace(ns)
            self._write_kubeconfig()
            if self.settings.controllers:
                self._start_controllers()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops controllers (their watches are cut at once), then the emulator; removes the temp kubeconfig."""
        self.server.api.admission.unregister(WORKSPACE_WEBHOOK)
        for ctl in self.controllers:
            ctl.signal_stop()
        self.server.set_proxy_handler(None)
        if self._started:
            # Stopping the server also ends any watch still waiting for its first byte.
            self.server.stop()
            self._started = False
        for ctl in self.controllers:
            ctl.stop(timeout=2.0)
        self.controllers = []
        if self.model_server is not None:
            self.model_server.close()
            self.model_server = None
        if self.rag_server is not None:
            self.rag_server.close()
            self.rag_server = None
        if self._api is not None:
            self._api.close()
            self._api = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # what clients need --------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.server.url

    @property
    def kubeconfig_path(self) -> Path:
        if self._kubeconfig is None:
            raise RuntimeError("the sandbox is not started")
        return self._kubeconfig

    def api_client(self, user_agent: str = "gitops-kaito-sandbox/test") -> client.ApiClient:
        api = make_api_client(self.url, "test")
        api.user_agent = user_agent
        return api

    # failures ---------------------------------------------------------------------------------------------------
    def inject(self, kind: str, workspace: str | None = None, namespace: str | None = None,
               instance_type: str | None = None) -> Failure:
        """Inject sku-unavailable, quota, image-pull or node-lost, for one workspace or all (None)."""
        failure = self.failures.add(Failure(kind, workspace, namespace, instance_type))
        for ctl in self.controllers:
            ctl.kick()
        return failure

    def clear_failures(self, failure: Failure | None = None) -> None:
        if failure is None:
            self.failures.clear()
        else:
            self.failures.remove(failure)
        for ctl in self.controllers:
            ctl.kick()

    # helpers for BYO scenarios --------------------------------------------------------------------------------
    def add_gpu_node(self, name: str, instance_type: str = "Standard_NC24ads_A100_v4",
                     labels: dict[str, str] | None = None, ready: bool = True, gpu_labels: bool = True) -> dict[str, Any]:
        """A GPU Node as GPU Feature Discovery would label it (the BYO case: nodes nobody here provisions)."""
        shape = gpu_shape(instance_type)
        node_labels = {"node.kubernetes.io/instance-type": instance_type, "kubernetes.io/os": "linux",
                       "kubernetes.io/hostname": name, "accelerator": "nvidia"}
        if gpu_labels:
            node_labels.update({"nvidia.com/gpu.product": shape.gpu_product, "nvidia.com/gpu.count": str(shape.gpu_count),
                                "nvidia.com/gpu.memory": str(shape.gpu_memory_mib), "nvidia.com/gpu.present": "true"})
        node_labels.update(labels or {})
        core = client.CoreV1Api(self._client())
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": node_labels}, "spec": {}}
        core.create_node(cast(Any, body))
        core.patch_node_status(name, node_status(shape, "256Gi", ready=ready),
                               _content_type="application/merge-patch+json")
        return body

    def ensure_namespace(self, name: str) -> None:
        core = client.CoreV1Api(self._client())
        try:
            core.create_namespace(cast(Any, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        except ApiException as err:
            if err.status != 409:
                raise

    # internals ----------------------------------------------------------------------------------------------------
    def _client(self) -> client.ApiClient:
        if self._api is None:
            raise RuntimeError("the sandbox is not started")
        return self._api

    def _install_crds(self) -> None:
        ext = client.ApiextensionsV1Api(self._client())
        crd_dir = self.settings.crd_dir or data_path("deploy/crds")
        names = []
        for path in sorted(Path(crd_dir).glob("*.yaml")):
            doc = yaml.load(path.read_text(), Loader=FAST_LOADER)
            try:
                ext.create_custom_resource_definition(cast(Any, doc))
            except ApiException as err:
                if err.status != 409:
                    raise
            names.append(doc)
        # Wait until each served version is discoverable, as a client would after `kubectl apply`.
        apis = client.ApisApi(self._client())
        deadline = time.monotonic() + CRD_READY_TIMEOUT_S
        for doc in names:
            group = doc["spec"]["group"]
            while True:
                groups = {g.name: {v.version for v in g.versions} for g in apis.get_api_versions().groups}
                wanted = {v["name"] for v in doc["spec"]["versions"] if v.get("served")}
                if wanted <= groups.get(group, set()):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {doc['metadata']['name']} did not become served")
                time.sleep(0.02)

    def _write_kubeconfig(self) -> None:
        path = self.settings.kubeconfig_path
        if path is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="gitops-kaito-sandbox-"))
            path = self._tmpdir / "kubeconfig.yaml"
        self._kubeconfig = self.server.write_kubeconfig(path)

    def _start_controllers(self) -> None:
        timing = self.settings.effective_timing
        if self.settings.admission:  # installed with KAITO, as its Helm chart installs it
            self.server.api.admission.register(workspace_webhook(self.settings.node_provisioning, self.settings.cloud))
        self.controllers = [
            KarpenterController(self.url, timing, self.failures),
            KaitoController(self.url, timing, self.failures, self.settings.node_provisioning, self.settings.cloud),
            InferenceSetController(self.url, timing, self.failures, self.settings.node_provisioning),
            ChaosController(self.url, timing, self.failures),
            RagEngineController(self.url, timing, self.failures),
        ]
        for ctl in self.controllers:
            ctl.start()
        self.model_server = ModelServer(self.url)
        self.rag_server = RagServer(self.url, self.model_server)
        self.proxy_handler = chain_proxies(self.model_server, self.rag_server)
        self.server.set_proxy_handler(self.proxy_handler)
