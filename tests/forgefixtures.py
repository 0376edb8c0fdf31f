"""Loopback servers that speak the GitHub commit statuses API and the GitLab commit status API, for commit status
tests: they check the token, the path and the body, keep every status per (sha, context), and GitLab's keeps its
state machine (a pending status cannot be set pending again: 400 "Cannot transition status").
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import pytest

GITHUB_STATES = ("error", "failure", "pending", "success")
GITLAB_STATES = ("pending", "running", "success", "failed", "canceled")
_GITHUB_PATH = re.compile(r"^/api/v3/repos/([^/]+/[^/]+)/statuses/([0-9a-f]{40})$")
_GITLAB_PATH = re.compile(r"^/api/v4/projects/([^/]+)/statuses/([0-9a-f]{40})$")


@dataclass
class Forge:
    """One fake forge. `script` answers the next requests first: (status, headers, body)."""

    provider: str
    repo: str
    token: str
    server: ThreadingHTTPServer | None = None
    commits: set[str] | None = None  # None: every sha exists
    statuses: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/{'v3' if self.provider == 'github' else 'v4'}"

    def states(self, sha: str, context: str) -> list[str]:
        with self.lock:
            return [s["state"] for s in self.statuses.get((sha, context), [])]

    def last(self, sha: str, context: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.statuses.get((sha, context))
            return dict(found[-1]) if found else None

    def contexts(self, sha: str) -> list[str]:
        with self.lock:
            return sorted(c for s, c in self.statuses if s == sha)

    # -- the API -------------------------------------------------------------------------------------------------
    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.requests.append((path, headers, body))
            if self.script:
                status, extra, text = self.script.pop(0)
                return status, extra, {"message": text}
            if self.provider == "github":
                return self._github(path, headers, body)
            return self._gitlab(path, headers, body)

    def _github(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        auth = headers.get("authorization", "")
        if auth not in (f"Bearer {self.token}", f"token {self.token}"):
            return 401, {}, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
        m = _GITHUB_PATH.match(path)
        if not m or m.group(1) != self.repo:
            return 404, {}, {"message": "Not Found"}
        sha = m.group(2)
        if self.commits is not None and sha not in self.commits:
            return 422, {}, {"message": f"No commit found for SHA: {sha}"}
        doc = json.loads(body)
        if doc.get("state") not in GITHUB_STATES or len(doc.get("description") or "") > 140:
            return 422, {}, {"message": "Validation Failed"}
        status = {"state": doc["state"], "context": doc.get("context") or "default",
                  "description": doc.get("description"), "target_url": doc.get("target_url")}
        self.statuses.setdefault((sha, status["context"]), []).append(status)
        return 201, {}, status

    def _gitlab(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        if headers.get("private-token") != self.token:
            return 401, {}, {"message": "401 Unauthorized"}
        m = _GITLAB_PATH.match(path)
        if not m or unquote(m.group(1)) != self.repo:
            return 404, {}, {"message": "404 Project Not Found"}
        sha = m.group(2)
        if self.commits is not None and sha not in self.commits:
            return 404, {}, {"message": "404 Commit Not Found"}
        doc = json.loads(body)
        state, name = doc.get("state"), doc.get("name") or "default"
        if state not in GITLAB_STATES:
            return 400, {}, {"error": "state does not have a valid value"}
        history = self.statuses.setdefault((sha, name), [])
        current = history[-1]["state"] if history else None
        if current in ("pending", "running") and state == current:
            verb = "enqueue" if state == "pending" else "run"
            return 400, {}, {"message": f"Cannot transition status via :{verb} from :{current} "
                                        f"(Reason(s): Status cannot transition via \"{verb}\")"}
        status = {"state": state, "name": name, "description": (doc.get("description") or "")[:255],
                  "target_url": doc.get("target_url")}
        history.append(status)
        return 201, {}, status


@pytest.fixture
def forge_factory() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def make(provider: str, repo: str = "org/models", token: str = "forge-token-0123456789") -> Forge:
        forge = Forge(provider, repo, token)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, doc = forge.answer(self.path, headers, body)
                data = json.dumps(doc).encode()
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        forge.server = server
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return forge

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()
