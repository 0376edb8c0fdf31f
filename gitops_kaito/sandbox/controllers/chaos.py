"""Simulated node loss: when a Workspace with an injected node-lost failure is Ready, its GPU Nodes vanish.

Each injected failure strikes a given Workspace once; Karpenter and KAITO then react as they would.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from gitops_kaito.sandbox.controllers.base import Controller
from gitops_kaito.sandbox.controllers.failures import NODE_LOST
from gitops_kaito.sandbox.controllers.kaito import (
    GROUP,
    LABEL_WORKSPACE,
    LABEL_WORKSPACE_NS,
    PLURAL,
    VERSION,
    selector_matches,
)


class ChaosController(Controller):
    name = "chaos"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._struck: set[tuple[int, str]] = set()  # (id of the failure, workspace uid)

    def watched(self) -> list[Any]:
        return [partial(self.kube.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)]

    def reconcile(self) -> float | None:
        if not any(f.kind == NODE_LOST for f in self.failures.all()):
            return None
        workspaces = self.kube.list_custom(GROUP, VERSION, PLURAL) or []
        nodes: list[dict[str, Any]] | None = None
        for ws in workspaces:
            meta = ws["metadata"]
            failure = self.failures.find(NODE_LOST, meta["namespace"], meta["name"])
            if failure is None or (ws.get("status") or {}).get("state") != "Ready":
                continue
            mark = (id(failure), str(meta.get("uid", meta["name"])))
            if mark in self._struck:
                continue
            if nodes is None:
                nodes = self.kube.list_nodes()
            for node in nodes:
                labels = node["metadata"].get("labels") or {}
                owned = labels.get(LABEL_WORKSPACE) == meta["name"] and labels.get(LABEL_WORKSPACE_NS) == meta["namespace"]
                if owned or (labels.get("nvidia.com/gpu.product") and selector_matches(ws, labels)):
                    self.kube.delete_node(node["metadata"]["name"])
            self._struck.add(mark)
        return None
