"""The API emulator as the benchmarks use it: KAITO's and Karpenter's CRDs and the generated namespaces, no controllers.

Sync timing needs only the API; the simulated controllers would add their own load and make timings noisy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client

from gitops_kaito.model.resources import data_path
from gitops_kaito.sandbox.apiserver import ApiServer

ADMIN_AGENT = "gitops-kaito-bench/admin"  # never counted as the reconciler's ("gitops-kaito/") or kubectl's
OURS = "gitops-kaito/"
KUBECTL = "kubectl"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Counts:
    total: int
    writes: int
    lists: int
    gets: int

    def as_dict(self) -> dict[str, int]:
        return {"total": self.total, "writes": self.writes, "lists": self.lists, "gets": self.gets}


def start(workdir: Path, namespaces: Iterable[str], latency_s: float = 0.0) -> tuple[ApiServer, Path]:
    """A fresh emulator with our CRDs and the namespaces; returns it and a kubeconfig pointing at it.
    `latency_s` is added to every request once the set-up is done (what a real API server's round trip costs)."""
    server = ApiServer(host="127.0.0.1", port=0).start()
    kubeconfig = server.write_kubeconfig(Path(workdir) / "kubeconfig")
    configuration = client.Configuration()
    configuration.host = server.url
    admin = client.ApiClient(configuration)
    admin.user_agent = ADMIN_AGENT
    ext = client.ApiextensionsV1Api(admin)
    for path in sorted(data_path("deploy/crds").glob("*.yaml")):
        ext.create_custom_resource_definition(yaml.safe_load(path.read_text()))
    core = client.CoreV1Api(admin)
    for name in namespaces:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    admin.close()
    server.request_log.clear()
    server.latency_s = latency_s
    return server, kubeconfig


def counts(server: ApiServer, user_agent_prefix: str) -> Counts:
    entries = server.request_log.select(user_agent_prefix=user_agent_prefix)
    return Counts(
        total=len(entries),
        writes=sum(1 for e in entries if e.method in WRITE_METHODS),
        lists=sum(1 for e in entries if e.verb == "list"),
        gets=sum(1 for e in entries if e.verb == "get"),
    )
