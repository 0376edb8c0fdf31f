"""A memo that keeps only what its last round used: the long-running loops' per-pass memories (plan, status).

An entry neither read nor stored in a round is gone after the next `rotate`, so a memo never outgrows one pass.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    def __init__(self) -> None:
        self._now: dict[K, V] = {}
        self._next: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        """The value the last round kept for `key` (kept for the next round too), or None."""
        value = self._now.get(key)
        if value is not None:
            self._next[key] = value
        return value

    def put(self, key: K, value: V) -> None:
        self._next[key] = value

    def rotate(self) -> None:
        """End of a round: what it read or stored is what the next one may reuse."""
        self._now, self._next = self._next, {}


__all__ = ["Recent"]
