"""Test hooks of the emulator: the request log (who called what) and fault injection rules.

Both are thread-safe; the HTTP layer records every request and consults the faults before serving it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: str
    user_agent: str
    status: int  # 0 when the connection was dropped by a fault
    time: float  # time.time() when the request arrived
    verb: str = ""  # Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection, proxy
    content_type: str = ""


class RequestLog:
    """Every request the emulator answered, in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def select(
        self,
        user_agent_prefix: str | None = None,
        method: str | None = None,
        verbs: Iterable[str] | None = None,
        path_regex: str | None = None,
    ) -> list[LoggedRequest]:
        wanted = {v.lower() for v in verbs} if verbs is not None else None
        rx = re.compile(path_regex) if path_regex else None
        return [
            e
            for e in self.entries()
            if (user_agent_prefix is None or e.user_agent.startswith(user_agent_prefix))
            and (method is None or e.method == method.upper())
            and (wanted is None or e.verb in wanted)
            and (rx is None or rx.search(e.path))
        ]

    def count(
        self,
        user_agent_prefix: str | None = None,
        method: str | None = None,
        verbs: Iterable[str] | None = None,
        path_regex: str | None = None,
    ) -> int:
        return len(self.select(user_agent_prefix, method, verbs, path_regex))


@dataclass
class Fault:
    """A rule: requests matching method ("*" = any), path_regex and query_regex (re.search; the raw query string) fail
    `times` times (None = always).

    drop_connection closes the socket without answering; else a non-zero status answers with a Kubernetes
    Status body (and Retry-After when set); status 0 with delay_s (or hold) only slows the request down.
    """

    method: str = "GET"
    path_regex: str = ".*"
    query_regex: str = ""
    status: int = 500
    times: int | None = 1
    retry_after: int | None = None
    delay_s: float = 0.0
    hold: threading.Event | None = None  # the request waits until this is set (a test lets it go when it chooses)
    drop_connection: bool = False
    message: str = "injected fault"
    hits: int = field(default=0, compare=False)

    def matches(self, method: str, path: str, query: str = "") -> bool:
        return ((self.method == "*" or self.method.upper() == method) and re.search(self.path_regex, path) is not None
                and re.search(self.query_regex, query) is not None)


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str, query: str = "") -> Fault | None:
        """The first matching rule with uses left, consuming one use."""
        with self._lock:
            for rule in self._rules:
                if rule.times is not None and rule.hits >= rule.times:
                    continue
                if rule.matches(method, path, query):
                    rule.hits += 1
                    return rule
        return None
