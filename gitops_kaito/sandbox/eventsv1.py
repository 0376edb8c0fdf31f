"""events.k8s.io/v1 Events as a second view of the core/v1 Events, the way a cluster serves one store in two shapes.

The two shapes differ only in top-level field names (k8s pkg/apis/events/v1/conversion.go): objects are stored in
the core shape and renamed on the way out; bodies (and patched results) are renamed on the way in.
"""

from __future__ import annotations

from typing import Any

GROUP = "events.k8s.io"
# events.k8s.io/v1 field -> core/v1 field; the others (reason, type, action, eventTime, series, related,
# reportingInstance, metadata) have one name in both.
_TO_CORE = {
    "regarding": "involvedObject",
    "note": "message",
    "deprecatedCount": "count",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedSource": "source",
    "reportingController": "reportingComponent",
}
_TO_V1 = {core: v1 for v1, core in _TO_CORE.items()}


def _rename(obj: Any, names: dict[str, str]) -> Any:
    if not isinstance(obj, dict):
        return obj
    return {names.get(k, k): v for k, v in obj.items()}


def to_core_event(obj: dict[str, Any]) -> dict[str, Any]:
    """A core/v1-shaped Event (an object already in that shape comes back unchanged)."""
    if not any(k in obj for k in _TO_CORE):
        return obj
    return dict(_rename(obj, _TO_CORE))


def to_v1_event(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(_rename(obj, _TO_V1))
