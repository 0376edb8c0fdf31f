"""Failures a sandbox can inject (SKU unavailable, quota, image pull, node lost, tuning failed), per object or all.

Controllers consult one shared FailureBook; each failure surfaces through the real condition reasons.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

SKU_UNAVAILABLE = "sku-unavailable"
QUOTA = "quota"
IMAGE_PULL = "image-pull"
NODE_LOST = "node-lost"
TUNING_FAILED = "tuning-failed"  # the tuning Job's pod fails (KAITO reports the first pod failure as Failed)
KINDS = (SKU_UNAVAILABLE, QUOTA, IMAGE_PULL, NODE_LOST, TUNING_FAILED)


@dataclass(frozen=True)
class Failure:
    """One injected failure. Unset fields match everything, so Failure("quota") hits every workspace."""

    kind: str
    workspace: str | None = None
    namespace: str | None = None
    instance_type: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown failure kind {self.kind!r}; expected one of {', '.join(KINDS)}")

    def matches(self, namespace: str | None, workspace: str | None, instance_type: str | None = None) -> bool:
        if self.workspace is not None and self.workspace != workspace:
            return False
        if self.namespace is not None and self.namespace != namespace:
            return False
        return self.instance_type is None or (instance_type or "").lower() == self.instance_type.lower()


class FailureBook:
    """The failures in force; thread-safe because controllers read it from their own threads."""

    def __init__(self, failures: tuple[Failure, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._failures: list[Failure] = list(failures)

    def add(self, failure: Failure) -> Failure:
        with self._lock:
            self._failures.append(failure)
        return failure

    def remove(self, failure: Failure) -> None:
        with self._lock:
            if failure in self._failures:
                self._failures.remove(failure)

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()

    def all(self) -> tuple[Failure, ...]:
        with self._lock:
            return tuple(self._failures)

    def find(self, kind: str, namespace: str | None, workspace: str | None,
             instance_type: str | None = None) -> Failure | None:
        for failure in self.all():
            if failure.kind == kind and failure.matches(namespace, workspace, instance_type):
                return failure
        return None
