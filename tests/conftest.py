"""Shared pytest fixtures. Cluster fixtures live in tests/fixtures_cluster.py (the sandbox or a real cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from gitops_kaito.sandbox.apiserver import ApiServer

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_KAITO = REPO_ROOT.parent / "shared" / "kaito"


@pytest.fixture
def shared_kaito() -> Path:
    """KAITO's own CRDs and data beside the checkout; tests that need them skip when absent."""
    if not SHARED_KAITO.is_dir():
        pytest.skip(f"{SHARED_KAITO} is absent: KAITO's own CRDs are not available on this machine")
    return SHARED_KAITO

# The `cluster` / `sandbox` fixtures (the sandbox, or a real cluster via GITOPS_KAITO_TEST_KUBECONFIG).
pytest_plugins = ["tests.fixtures_cluster", "tests.gitfixtures", "tests.sshfixtures", "tests.aksfixtures",
                  "tests.forgefixtures"]


@pytest.fixture
def server() -> Iterator[ApiServer]:
    """A bare API emulator (no CRDs, no controllers) for the emulator's own conformance tests."""
    srv = ApiServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def api(server: ApiServer, tmp_path: Path) -> client.ApiClient:
    """The official client, configured from the kubeconfig the emulator writes."""
    return config.new_client_from_config(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
