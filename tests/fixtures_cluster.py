"""The `cluster` and `sandbox` fixtures: the project's sandbox by default, a real cluster when
GITOPS_KAITO_TEST_KUBECONFIG is set (context from GITOPS_KAITO_TEST_CONTEXT), each test in a throwaway namespace.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from gitops_kaito.sandbox import Sandbox, SandboxSettings

ENV_KUBECONFIG = "GITOPS_KAITO_TEST_KUBECONFIG"
ENV_CONTEXT = "GITOPS_KAITO_TEST_CONTEXT"
T = TypeVar("T")


@dataclass(frozen=True)
class ClusterTarget:
    kind: str                 # "sandbox" | "real"
    kubeconfig: Path
    context: str | None
    namespace: str            # fresh, deleted after the test
    sandbox: Sandbox | None   # the sandbox behind it, None on a real cluster

    @property
    def describe(self) -> str:
        if self.sandbox is not None:
            return f"sandbox ({self.sandbox.url})"
        return f"real ({self.context})"

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
        doc: Any = yaml.safe_load(Path(path).read_text()) or {}
        context = doc.get("current-context")
    return Path(path), context


def pytest_report_header(config: pytest.Config) -> str:
    real = real_cluster()
    return f"cluster target: real ({real[1]})" if real else "cluster target: sandbox (started on first use)"


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
                           "metadata": {"name": name, "labels": {"gitops.kaito.sh/test": "true"}}})
    return name


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
        api.close()


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
    if target.sandbox is None:
        pytest.skip(f"emulator only: {why}")
