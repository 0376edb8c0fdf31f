"""Webhook verification: GitHub, GitLab and a generic HMAC header, each checked in constant time.

A verified push to the followed branch only triggers a pass; nothing in the payload is ever applied.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from gitops_kaito.repo.bounded import JsonRefused, loads_json

MAX_BODY_BYTES = 1024 * 1024
GENERIC_SIGNATURE_HEADER = "X-Signature"  # "sha256=<hex>" (also sha1 / sha512), as Flux's generic-hmac receiver


@dataclass(frozen=True)
class WebhookResult:
    """What the listener answers, and whether a pass should start now."""

    status: int
    trigger: bool
    message: str
    revision_hint: str = ""  # the pushed sha, for logs only; the pass fetches and pins its own commit


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return ""


def _hmac_ok(secret: bytes, body: bytes, signature: str) -> bool:
    algo, _, digest = signature.partition("=")
    if algo not in ("sha1", "sha256", "sha512") or not digest:
        return False
    expected = hmac.new(secret, body, getattr(hashlib, algo)).hexdigest()
    return hmac.compare_digest(expected, digest.strip().lower())


def _ref_result(body: bytes, branch: str, event_ok: bool, source: str) -> WebhookResult:
    if not event_ok:
        return WebhookResult(202, False, f"{source}: event ignored")
    try:
        payload = loads_json(body or b"{}", MAX_BODY_BYTES)
    except JsonRefused as err:
        return WebhookResult(400, False, f"{source}: body refused: {err}")
    if not isinstance(payload, dict):
        return WebhookResult(400, False, f"{source}: body is not a JSON object")
    ref = payload.get("ref")
    if ref is not None and ref != f"refs/heads/{branch}":
        return WebhookResult(202, False, f"{source}: push to {ref!s:.100} ignored (following {branch})")
    after = payload.get("after") or payload.get("checkout_sha") or ""
    return WebhookResult(202, True, f"{source}: push accepted, pass triggered", str(after)[:40])


def handle(kind: str, headers: Mapping[str, str], body: bytes, secret: bytes | None, branch: str) -> WebhookResult:
    """Verify one webhook delivery. `kind` is github, gitlab or generic (the path under /hooks/)."""
    if len(body) > MAX_BODY_BYTES:
        return WebhookResult(413, False, "payload too large")
    if not secret:
        # Without a secret anyone could trigger passes; refuse rather than trust.
        return WebhookResult(403, False, "webhooks are disabled: no webhook secret configured")
    if kind == "github":
        if not _hmac_ok(secret, body, _header(headers, "X-Hub-Signature-256")):
            return WebhookResult(401, False, "github: bad or missing X-Hub-Signature-256")
        event = _header(headers, "X-GitHub-Event")
        if event == "ping":
            return WebhookResult(200, False, "github: pong")
        return _ref_result(body, branch, event == "push", "github")
    if kind == "gitlab":
        token = _header(headers, "X-Gitlab-Token").encode()
        if not token or not hmac.compare_digest(token, secret):
            return WebhookResult(401, False, "gitlab: bad or missing X-Gitlab-Token")
        event = _header(headers, "X-Gitlab-Event")
        return _ref_result(body, branch, event in ("Push Hook", "Tag Push Hook"), "gitlab")
    if kind == "generic":
        if not _hmac_ok(secret, body, _header(headers, GENERIC_SIGNATURE_HEADER)):
            return WebhookResult(401, False, f"generic: bad or missing {GENERIC_SIGNATURE_HEADER}")
        return _ref_result(body, branch, True, "generic")
    return WebhookResult(404, False, f"unknown webhook type {kind!r}")


def sign(secret: bytes, body: bytes, algo: str = "sha256") -> str:
    """The signature header value a sender computes (used by tests, the demo and `bench/`)."""
    return f"{algo}=" + hmac.new(secret, body, getattr(hashlib, algo)).hexdigest()
