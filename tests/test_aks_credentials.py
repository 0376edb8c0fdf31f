"""The aks-mode default credential path: the REAL DefaultAzureCredential against a loopback managed-identity endpoint.

Only environment variables are set; no code is patched, so the token really flows endpoint -> azure-identity -> ARM.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gitops_kaito.provision.agentpool import desired_pool
from gitops_kaito.provision.aks import AksSettings
from gitops_kaito.provision.provisioner import AgentPoolProvisioner
from gitops_kaito.sandbox.arm import ArmEmulator, ArmSettings
from tests.test_aks_agentpool import model

IDENTITY_HEADER = "identity-header-secret"
WAIT = 20.0  # upper bound for LROs in a pass; they finish in milliseconds here

# Variables that would make DefaultAzureCredential pick another source (or none) before managed identity.
_OTHER_SOURCES = (
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_TOKEN_CREDENTIALS",
    "IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT",
    "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy",
)


@dataclass
class TokenEndpoint:
    """An App Service-style managed-identity token endpoint (what IDENTITY_ENDPOINT points at on Azure)."""

    token: str = field(default_factory=lambda: "mi-" + secrets.token_urlsafe(16))
    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def answer(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.requests.append((path, query, headers))
        if headers.get("x-identity-header") != IDENTITY_HEADER:
            return 401, {"error": "invalid_request", "error_description": "wrong X-IDENTITY-HEADER"}
        if query.get("api-version") != ["2019-08-01"] or len(query.get("resource", [])) != 1:
            return 400, {"error": "invalid_request", "error_description": f"bad query {query}"}
        return 200, {"access_token": self.token, "expires_on": str(int(time.time()) + 3600),
                     "resource": query["resource"][0], "token_type": "Bearer"}


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            status, body = endpoint.answer(parts.path, parse_qs(parts.query),
                                           {k.lower(): v for k, v in self.headers.items()})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/msi/token"
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def app_service_env(monkeypatch: pytest.MonkeyPatch, token_endpoint: TokenEndpoint) -> TokenEndpoint:
    for name in _OTHER_SOURCES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", token_endpoint.url)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return token_endpoint


def settings_for(arm: ArmEmulator) -> AksSettings:
    s = arm.settings
    return AksSettings(s.subscription_id, s.resource_group, s.cluster_name, arm.url, s.location,
                       polling_interval_s=0.01, retry_total=0)


def test_default_credential_uses_app_service_managed_identity(app_service_env: TokenEndpoint) -> None:
    endpoint = app_service_env
    phi = desired_pool(model("phi"))
    with ArmEmulator(ArmSettings(token=endpoint.token)) as arm:
        # No credential argument: make_client builds DefaultAzureCredential itself.
        prov = AgentPoolProvisioner.for_settings(settings_for(arm), sleep=lambda _s: None)
        outcomes = prov.reconcile([phi], revision="main@sha1:aaa", wait_s=WAIT)

        assert [(o.pool, o.action, o.state, o.code) for o in outcomes] == [(phi.name, "create", "Ready", "")]
        pool = arm.pool(phi.name)
        assert pool is not None and pool["properties"]["provisioningState"] == "Succeeded"
        # The emulator answers 401 to any other bearer token, so every logged success carried the issued one.
        assert arm.request_log.count(status=401) == 0
        assert arm.request_log.count(method="PUT", pool=phi.name) == 1

    assert endpoint.requests, "the token endpoint was never called"
    path, query, headers = endpoint.requests[0]
    assert path == "/msi/token"
    assert query["api-version"] == ["2019-08-01"]
    # The audience is the configured ARM endpoint (sovereign-cloud rule), not the public cloud.
    assert query["resource"][0].rstrip("/") == arm.url.rstrip("/")
    assert headers["x-identity-header"] == IDENTITY_HEADER
    # azure-identity caches the token: one endpoint call serves the whole pass (list, put, polls).
    assert len(endpoint.requests) == 1


def test_default_credential_token_is_what_arm_sees(app_service_env: TokenEndpoint) -> None:
    """An emulator expecting a different token rejects the issued one: the bearer really is the endpoint's."""
    phi = desired_pool(model("phi"))
    with ArmEmulator(ArmSettings(token="some-other-token")) as arm:
        prov = AgentPoolProvisioner.for_settings(settings_for(arm), sleep=lambda _s: None)
        outcomes = prov.reconcile([phi], revision="main@sha1:aaa", wait_s=WAIT)

        assert arm.pool(phi.name) is None
        assert arm.request_log.count(status=401) >= 1
        assert arm.request_log.count(method="PUT") == 0
    assert [(o.pool, o.state, o.code) for o in outcomes] == [(phi.name, "AuthFailed", "InvalidAuthenticationToken")]
    assert len(app_service_env.requests) >= 1
