"""Turns what the watch cache sees (a hand edit, a deleted object, KAITO's status moving) into daemon passes.

Changes are gathered for a moment (`debounce_s`) so a burst starts one pass; our own writes never reach here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gitops_kaito.adapters.watchcache import CacheChange

log = logging.getLogger(__name__)

CLUSTER_REASON = "cluster"  # every pass the cluster started has a reason starting with this
DEBOUNCE_S = 0.1
_SHOWN = 3  # models named in the reason; the rest are counted


class Reactor:
    """The watch cache's `on_change`: collects changed models and asks for one pass per burst."""

    def __init__(self, trigger: Callable[[str], None] | None = None, debounce_s: float = DEBOUNCE_S) -> None:
        self.trigger = trigger  # the daemon's (set once the daemon exists)
        self.debounce_s = debounce_s
        self._lock = threading.Lock()
        self._changed: dict[str, str] = {}  # model id -> cause, in arrival order
        self._timer: threading.Timer | None = None
        self._stopped = False
        self.started: dict[str, int] = {}  # model id -> passes its changes asked for (metrics, tests)

    def __call__(self, change: CacheChange) -> None:
        if not change.model_id:  # a node object of no Workspace of ours
            return
        with self._lock:
            if self._stopped:
                return
            self._changed[change.model_id] = change.cause
            if self._timer is None:
                self._timer = threading.Timer(self.debounce_s, self._flush)
                self._timer.daemon = True
                self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            changed, self._changed = self._changed, {}
            self._timer = None
        if not changed or self.trigger is None:
            return
        for model in changed:
            self.started[model] = self.started.get(model, 0) + 1
        # "; " inside: the daemon joins the reasons of coalesced triggers with ", ".
        shown = "; ".join(f"{m} {cause}" for m, cause in list(changed.items())[:_SHOWN])
        more = f" and {len(changed) - _SHOWN} more" if len(changed) > _SHOWN else ""
        log.info("cluster changed: %s%s", shown, more)
        self.trigger(f"{CLUSTER_REASON}: {shown}{more}")

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()


def cluster_only(reason: str) -> bool:
    """Whether a pass was started by the cluster alone (no interval, webhook or start-up among its reasons)."""
    parts = [p.strip() for p in reason.split(", ") if p.strip()]
    return bool(parts) and all(p.startswith(CLUSTER_REASON + ":") for p in parts)


__all__ = ["CLUSTER_REASON", "Reactor", "cluster_only"]
