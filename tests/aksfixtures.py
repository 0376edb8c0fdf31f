"""The aks-mode model repository shared by the agent-pool tests (one config, one model shape, a writer), and a
loopback managed-identity token endpoint for the real DefaultAzureCredential (fixtures `app_service_env`)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

CONFIG = """apiVersion: gitops.kaito.sh/v1alpha1
kind: Config
defaults:
  provisioning: aks
azure:
  subscriptionId: 00000000-0000-0000-0000-000000000000
  resourceGroup: rg-ml
  clusterName: aks-ml
"""
# Where the daemon writes agent pools: the operator's (flags/env) only. CONFIG's azure: states the same values as pins.
TARGET = {"subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "rg-ml", "cluster_name": "aks-ml"}
TARGET_FLAGS = ["--azure-subscription-id", TARGET["subscription_id"], "--azure-resource-group", TARGET["resource_group"],
                "--azure-cluster-name", TARGET["cluster_name"]]
MODEL = """apiVersion: gitops.kaito.sh/v1alpha1
kind: ModelDeployment
metadata:
  name: {name}
spec:
  model: phi-4-mini-instruct
  instanceType: Standard_NC24ads_A100_v4
  nodeSelector: {{apps: {name}}}
"""


def write_repo(root: Path, names: list[str]) -> None:
    (root / "models" / "ml").mkdir(parents=True, exist_ok=True)
    (root / "gitops-kaito.yaml").write_text(CONFIG)
    for old in (root / "models" / "ml").glob("*.yaml"):
        old.unlink()
    for name in names:
        (root / "models" / "ml" / f"{name}.yaml").write_text(MODEL.format(name=name))


IDENTITY_HEADER = "identity-header-secret"

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
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
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
