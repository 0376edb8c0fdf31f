"""Server-side table output (`Accept: application/json;as=Table`) as kubectl get requests it.

Custom resources use their CRD's additionalPrinterColumns; built-ins get Name plus a few kind-specific columns.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from gitops_kaito.sandbox.builtin import ResourceType
from gitops_kaito.sandbox.eventsv1 import to_core_event

_FILTER = re.compile(r"^\[\?\(@\.([A-Za-z0-9_.]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")
_INDEX = re.compile(r"^\[(\d+)\]")
_FIELD = re.compile(r"^\.([A-Za-z0-9_-]+)")
_QUOTED = re.compile(r"^\[[\"']([^\"']+)[\"']\]")


def jsonpath(obj: Any, expr: str) -> list[Any]:
    """A subset of kubectl JSONPath: .a.b, ['x.y'], [0], [*] and [?(@.k=="v")] filters."""
    expr = expr.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    current = [obj]
    while expr:
        if expr.startswith("[*]"):
            current = [i for c in current if isinstance(c, list) for i in c]
            expr = expr[3:]
            continue
        m = _FILTER.match(expr)
        if m:
            path, value = m.groups()
            current = [i for c in current if isinstance(c, list) for i in c if _dig(i, path) == value]
            expr = expr[m.end():]
            continue
        m = _INDEX.match(expr)
        if m:
            idx = int(m.group(1))
            current = [c[idx] for c in current if isinstance(c, list) and len(c) > idx]
            expr = expr[m.end():]
            continue
        m = _FIELD.match(expr) or _QUOTED.match(expr)
        if m:
            key = m.group(1)
            current = [c[key] for c in current if isinstance(c, dict) and key in c]
            expr = expr[m.end():]
            continue
        return []
    return current


def _dig(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return None if obj is None else str(obj)


def age(timestamp: str | None) -> str:
    """The age of an RFC 3339 timestamp (with or without fraction and offset), as kubectl shows it."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return "<invalid>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    secs = max(0, int((datetime.now(UTC) - then).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    if secs < 7200:
        return f"{secs // 60}m"
    if secs < 172800:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def _cell(obj: dict[str, Any], column: dict[str, Any]) -> Any:
    values = jsonpath(obj, column.get("jsonPath", ""))
    if not values:
        return None
    value = values[0]
    if column.get("type") == "date":
        return age(value if isinstance(value, str) else None)
    if isinstance(value, dict | list):
        import json

        return json.dumps(value)
    return value


_BUILTIN_COLUMNS: dict[str, tuple[dict[str, Any], ...]] = {
    "Namespace": ({"name": "Status", "type": "string", "jsonPath": ".status.phase"},),
    "Service": ({"name": "Type", "type": "string", "jsonPath": ".spec.type"},
                {"name": "Cluster-IP", "type": "string", "jsonPath": ".spec.clusterIP"}),
    "Pod": ({"name": "Status", "type": "string", "jsonPath": ".status.phase"},),
    "Lease": ({"name": "Holder", "type": "string", "jsonPath": ".spec.holderIdentity"},),
    "Secret": ({"name": "Type", "type": "string", "jsonPath": ".type"},),
}


# Kinds the API server prints with code of its own rather than columns (k8s pkg/printers/internalversion/printers.go):
# all columns are sent, kubectl hides those with priority 1 unless -o wide. Events have no Name column up front.
_EVENT_COLUMNS = (("Last Seen", 0, ""), ("Type", 0, ""), ("Reason", 0, ""), ("Object", 0, ""), ("Subobject", 1, ""),
                  ("Source", 1, ""), ("Message", 0, ""), ("First Seen", 1, ""), ("Count", 1, ""), ("Name", 1, "name"))
_NODE_COLUMNS = (("Name", 0, "name"), ("Status", 0, ""), ("Roles", 0, ""), ("Age", 0, ""), ("Version", 0, ""),
                 ("Internal-IP", 1, ""), ("External-IP", 1, ""), ("OS-Image", 1, ""), ("Kernel-Version", 1, ""),
                 ("Container-Runtime", 1, ""))


def _event_cells(obj: dict[str, Any]) -> list[Any]:
    e = to_core_event(obj)
    first = age(e.get("firstTimestamp") or e.get("eventTime"))
    last = age(e["lastTimestamp"]) if e.get("lastTimestamp") else first
    count = e.get("count") or 1
    series = e.get("series")
    if isinstance(series, dict):
        last, count = age(series.get("lastObservedTime")), series.get("count") or count
    involved = e.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = e.get("source") or {}
    reporter = source.get("component") or e.get("reportingComponent") or ""
    host = source.get("host") or e.get("reportingInstance") or ""
    return [last, e.get("type", ""), e.get("reason", ""), target, involved.get("fieldPath", ""),
            f"{reporter}, {host}" if host and reporter else reporter, e.get("message", ""), first, int(count),
            e["metadata"]["name"]]


def _node_cells(obj: dict[str, Any]) -> list[Any]:
    status = obj.get("status") or {}
    ready = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = {"True": "Ready", "False": "NotReady"}.get(str(ready), "Unknown")
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = obj["metadata"].get("labels") or {}
    roles = sorted({k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]}
                   | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set()))
    info = status.get("nodeInfo") or {}
    addresses = status.get("addresses") or []

    def address(kind: str) -> str:
        return next((a.get("address", "") for a in addresses if a.get("type") == kind), "<none>")

    return [obj["metadata"]["name"], state, ",".join(roles) or "<none>", age(obj["metadata"].get("creationTimestamp")),
            info.get("kubeletVersion", ""), address("InternalIP"), address("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


_PRINTERS = {"Event": (_EVENT_COLUMNS, _event_cells), "Node": (_NODE_COLUMNS, _node_cells)}
INCLUDE_OBJECT = ("None", "Metadata", "Object")


def table(t: ResourceType, objects: list[dict[str, Any]], printer_columns: tuple[dict[str, Any], ...] | None,
          list_meta: dict[str, Any], include_object: str = "Metadata", headers: bool = True) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table. `include_object` is the request's includeObject (None | Metadata | Object): what each
    row carries besides its cells, which is what kubectl's --sort-by reads. `headers` False leaves the column
    definitions out, as a watch does after its first event."""
    printer = _PRINTERS.get(t.kind) if printer_columns is None else None
    if printer is not None:
        columns = [{"name": name, "type": "string" if name != "Count" else "integer", "format": fmt,
                    "description": name, "priority": priority} for name, priority, fmt in printer[0]]
        cells_of = printer[1]
    else:
        if printer_columns is None:
            printer_columns = (*_BUILTIN_COLUMNS.get(t.kind, ()),
                               {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
        given = printer_columns
        columns = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
        for c in given:
            columns.append({
                "name": c.get("name", ""),
                "type": "string" if c.get("type") == "date" else c.get("type", "string"),
                "format": c.get("format", ""),
                "description": c.get("description", ""),
                "priority": int(c.get("priority") or 0),
            })

        def cells_of(obj: dict[str, Any]) -> list[Any]:
            return [obj["metadata"]["name"], *(_cell(obj, c) for c in given)]

    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": cells_of(obj)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    out: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {k: v for k, v in list_meta.items() if k in ("resourceVersion", "continue")},
    }
    if headers:
        out["columnDefinitions"] = columns
    out["rows"] = rows
    return out
