"""Server-side table output (`Accept: application/json;as=Table`) as kubectl get requests it.

Custom resources use their CRD's additionalPrinterColumns; built-ins get Name plus a few kind-specific columns.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from gitops_kaito.sandbox.builtin import ResourceType

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
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<invalid>"
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
    "Node": ({"name": "Status", "type": "string",
              "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},),
    "Service": ({"name": "Type", "type": "string", "jsonPath": ".spec.type"},
                {"name": "Cluster-IP", "type": "string", "jsonPath": ".spec.clusterIP"}),
    "Pod": ({"name": "Status", "type": "string", "jsonPath": ".status.phase"},),
    "Lease": ({"name": "Holder", "type": "string", "jsonPath": ".spec.holderIdentity"},),
    "Secret": ({"name": "Type", "type": "string", "jsonPath": ".type"},),
}


def table(t: ResourceType, objects: list[dict[str, Any]], printer_columns: tuple[dict[str, Any], ...] | None,
          list_meta: dict[str, Any]) -> dict[str, Any]:
    if printer_columns is None:
        printer_columns = (*_BUILTIN_COLUMNS.get(t.kind, ()),
                           {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
    columns = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    for c in printer_columns:
        columns.append({
            "name": c.get("name", ""),
            "type": "string" if c.get("type") == "date" else c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": int(c.get("priority") or 0),
        })
    rows = []
    for obj in objects:
        cells = [obj["metadata"]["name"], *(_cell(obj, c) for c in printer_columns)]
        rows.append({
            "cells": cells,
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]},
        })
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {k: v for k, v in list_meta.items() if k in ("resourceVersion", "continue")},
        "columnDefinitions": columns,
        "rows": rows,
    }
