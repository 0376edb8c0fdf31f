"""metav1.Condition helpers for the simulated controllers: build, compare and merge condition lists.

lastTransitionTime moves only when a condition's status changes, as on a real cluster.
"""

from __future__ import annotations

from typing import Any

from gitops_kaito.sandbox.operations import now_iso  # the emulator's own timestamps: one format for both

Condition = dict[str, Any]


def cond(type_: str, status: bool | str, reason: str, message: str = "",
         observed_generation: int | None = None) -> Condition:
    value = status if isinstance(status, str) else ("True" if status else "False")
    out: Condition = {"type": type_, "status": value, "reason": reason, "message": message}
    if observed_generation is not None:
        out["observedGeneration"] = observed_generation
    return out


def find(conditions: list[Condition] | None, type_: str) -> Condition | None:
    for c in conditions or []:
        if c.get("type") == type_:
            return c
    return None


def is_true(conditions: list[Condition] | None, type_: str) -> bool:
    c = find(conditions, type_)
    return bool(c and c.get("status") == "True")


def merge(old: list[Condition] | None, new: list[Condition]) -> list[Condition]:
    """The new list (in its order), keeping lastTransitionTime of conditions whose status did not change;
    conditions of other types already present (set by someone else) are kept after ours."""
    now = now_iso()
    out: list[Condition] = []
    for c in new:
        prev = find(old, c["type"])
        item = dict(c)
        if prev is not None and prev.get("status") == c["status"] and prev.get("lastTransitionTime"):
            item["lastTransitionTime"] = prev["lastTransitionTime"]
        else:
            item["lastTransitionTime"] = now
        out.append(item)
    ours = {c["type"] for c in new}
    out.extend(c for c in old or [] if c.get("type") not in ours)
    return out


def same(old: list[Condition] | None, new: list[Condition]) -> bool:
    """Equal apart from lastTransitionTime."""
    def strip(cs: list[Condition] | None) -> list[dict[str, Any]]:
        return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in cs or []]
    return strip(old) == strip(new)
