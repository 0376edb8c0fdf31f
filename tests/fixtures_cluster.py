"""The `cluster`, `kaito_cluster` and `sandbox` fixtures: the project's sandbox or emulator by default, a real cluster
when GITOPS_KAITO_TEST_KUBECONFIG is set (context from GITOPS_KAITO_TEST_CONTEXT), each test in a throwaway namespace.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from gitops_kaito.model.ownership import LABEL_MODEL_NAMESPACE, OWNER_SELECTOR
from gitops_kaito.model.resources import data_path
from gitops_kaito.repo.yamlsource import FAST_LOADER
from gitops_kaito.sandbox import Sandbox, SandboxSettings
from gitops_kaito.sandbox.apiserver import ApiServer

ENV_KUBECONFIG = "GITOPS_KAITO_TEST_KUBECONFIG"
ENV_CONTEXT = "GITOPS_KAITO_TEST_CONTEXT"
NO_KAITO_CRDS = "the target cluster does not serve KAITO's CRDs"
TEST_NAMESPACE_LABEL = "gitops.kaito.sh/test"
T = TypeVar("T")


@dataclass(frozen=True)
class ClusterTarget:
    kind: str                 # "sandbox" | "emulator" (private, bare) | "real"
    kubeconfig: Path
    context: str | None
    namespace: str            # fresh, deleted after the test ("ml" in a private emulator)
    sandbox: Sandbox | None   # the sandbox behind it, None on a real cluster
    server: ApiServer | None = None  # the private emulator behind an "emulator" target

    @property
    def describe(self) -> str:
        if self.sandbox is not None:
            return f"sandbox ({self.sandbox.url})"
        if self.server is not None:
            return f"emulator ({self.server.url}, private, no controllers)"
        return f"real ({self.context})"

    @property
    def emulator(self) -> ApiServer | None:
        """The in-process emulator whose hooks (request_log, faults, proxy) a test may use; None on a real cluster."""
        return self.sandbox.server if self.sandbox is not None else self.server

    @property
    def bare(self) -> bool:
        """No controller runs: a test may play KAITO and Karpenter (write their status) without lying to one."""
        return self.kind == "emulator"

    def cli_args(self) -> list[str]:
        """--kubeconfig (and --context) for gitops-kaito commands aimed at this target."""
        return ["--kubeconfig", str(self.kubeconfig), *(["--context", self.context] if self.context else [])]

    def api_client(self, user_agent: str = "gitops-kaito-tests") -> client.ApiClient:
        api = config.new_client_from_config(config_file=str(self.kubeconfig), context=self.context)
        api.user_agent = user_agent
        return api


def wait_until(predicate: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.02,
               what: str = "condition") -> T:
    """Poll until predicate() returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def real_cluster() -> tuple[Path, str | None] | None:
    path = os.environ.get(ENV_KUBECONFIG)
    if not path:
        return None
    context = os.environ.get(ENV_CONTEXT)
    if context is None:
        try:
            doc: Any = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            doc = {}  # the `cluster` fixture reports the unreadable kubeconfig when a test needs it
        context = doc.get("current-context") if isinstance(doc, dict) else None
    return Path(path), context


def pytest_report_header(config: pytest.Config) -> str:
    real = real_cluster()
    if real:
        return f"cluster target: real ({real[1]}, kubeconfig {real[0]})"
    return (f"cluster target: sandbox (started on first use) and private emulators; "
            f"set {ENV_KUBECONFIG} for a real cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The `emulator_only` marker: such tests use private emulators whatever the target, so on a real cluster
    they would pass without touching it; skip them there and say so."""
    if not real_cluster():
        return
    skip = pytest.mark.skip(reason="emulator only: marked emulator_only (private emulator hooks, not the target)")
    for item in items:
        if item.get_closest_marker("emulator_only"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_sandbox() -> Iterator[Sandbox | None]:
    """One sandbox for the session (fast, NAP), started lazily; None when a real cluster is the target."""
    if real_cluster():
        yield None
        return
    with Sandbox(SandboxSettings(speed="fast", node_provisioning="nap")) as sb:
        yield sb


def _new_namespace(core: client.CoreV1Api, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": name, "labels": {TEST_NAMESPACE_LABEL: "true"}}})
    return name


def _namespace_gone(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except ApiException as err:
        if err.status == 404:
            return True
        raise
    return False


def _owned_namespaces(api: client.ApiClient) -> set[str]:
    """The model namespaces of every object gitops-kaito owns on the cluster (kinds it does not serve skipped)."""
    custom = client.CustomObjectsApi(api)
    lists: list[Callable[[], Any]] = [
        lambda: client.CoreV1Api(api).list_config_map_for_all_namespaces(label_selector=OWNER_SELECTOR).to_dict(),
        lambda: custom.list_cluster_custom_object("kaito.sh", "v1beta1", "workspaces", label_selector=OWNER_SELECTOR),
        lambda: custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", label_selector=OWNER_SELECTOR)]
    found: set[str] = set()
    for fetch in lists:
        try:
            items = fetch()["items"]
        except ApiException as err:
            if err.status == 404:
                continue
            raise
        for item in items:
            labels = (item.get("metadata") or {}).get("labels") or {}
            found.add(labels.get(LABEL_MODEL_NAMESPACE, "?"))
    return found


def _delete_owned_nodeclaims(api: client.ApiClient, namespace: str) -> None:
    """NodeClaims are cluster-scoped: deleting the namespace leaves those a test's models created."""
    custom = client.CustomObjectsApi(api)
    selector = f"{OWNER_SELECTOR},{LABEL_MODEL_NAMESPACE}={namespace}"

    def names() -> list[str]:
        try:
            body = custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", label_selector=selector)
        except ApiException as err:
            if err.status == 404:
                return []
            raise
        return [i["metadata"]["name"] for i in body["items"]]

    for name in names():
        try:
            custom.delete_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", name)
        except ApiException as err:
            if err.status != 404:
                raise
    wait_until(lambda: not names(), timeout=120, interval=0.2, what=f"the NodeClaims of {namespace} to be deleted")


def _guard_foreign_models(api: client.ApiClient) -> None:
    """A test pass owns every gitops-kaito object on the cluster, like the reconciler: refuse a cluster where
    objects of other model namespaces exist (another install's, or a previous test's not yet deleted)."""
    core = client.CoreV1Api(api)
    test_namespaces = {n.metadata.name for n in core.list_namespace(label_selector=TEST_NAMESPACE_LABEL).items}

    # Previous tests' namespaces may still be terminating: wait for them; anything else is someone's real model.
    wait_until(lambda: not _owned_namespaces(api) & test_namespaces, timeout=120, interval=0.5,
               what="earlier test namespaces to be deleted")
    others = _owned_namespaces(api)
    if others:
        pytest.skip(f"the target cluster has objects managed by gitops-kaito for namespaces {sorted(others)}: "
                    f"a test pass would prune them")


@pytest.fixture
def cluster(shared_sandbox: Sandbox | None, request: pytest.FixtureRequest) -> Iterator[ClusterTarget]:
    """A Kubernetes API and a fresh namespace in it; prints which target the test ran on."""
    real = real_cluster()
    if real:
        kubeconfig, context = real
        sandbox = None
    else:
        assert shared_sandbox is not None
        kubeconfig, context, sandbox = shared_sandbox.kubeconfig_path, None, shared_sandbox
    probe = ClusterTarget("real" if real else "sandbox", kubeconfig, context, "", sandbox)
    api = probe.api_client()
    core = client.CoreV1Api(api)
    if real:
        _guard_foreign_models(api)
    namespace = _new_namespace(core, "t")
    target = ClusterTarget(probe.kind, kubeconfig, context, namespace, sandbox)
    print(f"cluster target: {target.describe}")
    request.node.user_properties.append(("cluster_target", target.describe))
    try:
        yield target
    finally:
        try:
            core.delete_namespace(namespace)
        except ApiException as err:
            if err.status != 404:
                raise
        if real:
            # Passes list cluster-wide: the next test must not find this one's objects still terminating.
            _delete_owned_nodeclaims(api, namespace)
            wait_until(lambda: _namespace_gone(core, namespace), timeout=120, interval=0.2,
                       what=f"namespace {namespace} to be deleted")
        api.close()


def require_kaito_crds(target: ClusterTarget) -> None:
    """Skip unless the target serves Workspaces and NodeClaims: a real cluster's CRDs are never installed by tests."""
    with target.api_client() as api:
        custom = client.CustomObjectsApi(api)
        try:
            custom.list_namespaced_custom_object("kaito.sh", "v1beta1", target.namespace, "workspaces", limit=1)
            custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", limit=1)
        except ApiException as err:
            if err.status == 404:
                pytest.skip(NO_KAITO_CRDS)
            raise


@contextmanager
def private_emulator(tmp: Path, crds: bool = True, namespace: str = "ml") -> Iterator[ClusterTarget]:
    """A bare API emulator of its own (no controllers), our CRDs installed through the API when `crds`, one namespace:
    for tests that count requests, inject faults or change what the cluster serves."""
    server = ApiServer().start()
    try:
        kubeconfig = server.write_kubeconfig(tmp / "kubeconfig")
        target = ClusterTarget("emulator", kubeconfig, None, namespace, None, server)
        with target.api_client("test-admin/1.0") as api:
            if crds:
                ext = client.ApiextensionsV1Api(api)
                for path in sorted(data_path("deploy/crds").glob("*.yaml")):
                    ext.create_custom_resource_definition(yaml.load(path.read_text(), Loader=FAST_LOADER))
            client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
        yield target
    finally:
        server.stop()


@pytest.fixture
def kaito_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClusterTarget]:
    """KAITO's and Karpenter's CRDs and a namespace. By default a private bare emulator (namespace "ml"); with
    GITOPS_KAITO_TEST_KUBECONFIG the real cluster and the `cluster` fixture's throwaway namespace, skipped when the
    cluster does not serve the CRDs."""
    if real_cluster():
        target: ClusterTarget = request.getfixturevalue("cluster")
        require_kaito_crds(target)
        yield target
        return
    with private_emulator(tmp_path / "emulator") as target:
        print(f"cluster target: {target.describe}")
        request.node.user_properties.append(("cluster_target", target.describe))
        yield target


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A private sandbox for tests that need isolation (counting requests, BYO mode, global failures).

    Parametrize indirectly with SandboxSettings to change its mode."""
    settings = getattr(request, "param", None) or SandboxSettings(speed="fast")
    with Sandbox(settings) as sb:
        print(f"cluster target: sandbox ({sb.url}, private)")
        yield sb


@pytest.fixture
def byo_sandbox() -> Iterator[Sandbox]:
    """A private sandbox whose simulated KAITO runs with bring-your-own nodes (node provisioning off), with an
    "ml" namespace: for the modes where gitops-kaito provisions the GPU nodes itself."""
    with Sandbox(SandboxSettings(speed="fast", node_provisioning="byo", namespaces=("default", "ml"))) as sb:
        print(f"cluster target: sandbox ({sb.url}, private, BYO)")
        yield sb


def skip_on_real(target: ClusterTarget, why: str) -> None:
    """For tests that rely on what only the sandbox does (simulated controllers, injected failures)."""
    if target.kind == "real":
        pytest.skip(f"emulator only: {why}")
