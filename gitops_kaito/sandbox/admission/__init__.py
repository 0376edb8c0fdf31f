"""Validating admission in the emulator: webhooks registered per API group and kind, asked on every create and
update (POST, PUT, PATCH, server-side apply) after schema validation and before anything is stored.

A denial answers as kube-apiserver relays a knative validating webhook's refusal: 400 BadRequest with the message
`admission webhook "<name>" denied the request: validation failed: <errors, one per line>` (knative.dev/pkg
`webhook/resourcesemantics/validation`, `webhook/admission.go` MakeErrorStatus; the apiserver's prefix from
`k8s.io/apiserver/pkg/admission/plugin/webhook/errors`). With dryRun=All the webhook runs all the same and nothing
is persisted either way, as on a cluster (webhooks declare sideEffects: None). Writes to the status subresource and
to objects being deleted are not reviewed (knative skips both). Rules for more kinds are one `register` each.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from gitops_kaito.sandbox.errors import ApiError

Obj = dict[str, Any]
CREATE = "CREATE"
UPDATE = "UPDATE"


@dataclass(frozen=True)
class Review:
    """One request as a validating webhook sees it."""

    operation: str  # CREATE | UPDATE
    api_version: str  # the version the request was made in (kaito.sh/v1alpha1 gets legacy rules)
    obj: Obj  # the object as it would be stored (defaults applied)
    old: Obj | None  # UPDATE: the stored object
    dry_run: bool


class ClusterView(Protocol):
    """What a webhook may read of the cluster while deciding (the emulator's store, under its lock)."""

    def get(self, group: str, plural: str, namespace: str, name: str) -> Obj | None: ...
    def list(self, group: str, plural: str) -> list[Obj]: ...


# Returns the webhook's errors, each one line of the message; no errors admits the request.
Validator = Callable[[Review, ClusterView], list[str]]


@dataclass(frozen=True)
class Webhook:
    name: str  # the ValidatingWebhookConfiguration webhook name, e.g. validation.workspace.kaito.sh
    group: str
    kind: str
    validate: Validator


def denial(webhook: str, errors: list[str]) -> ApiError:
    return ApiError(400, f'admission webhook "{webhook}" denied the request: validation failed: '
                    + "\n".join(errors), "BadRequest")


class Admission:
    """The webhooks of one emulated cluster; thread-safe to (un)register while requests are served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: dict[tuple[str, str], tuple[Webhook, ...]] = {}

    def register(self, hook: Webhook, *, first: bool = False) -> Webhook:
        """Add (or replace) a webhook. kube-apiserver calls a kind's webhooks in parallel and reports one denial
        when several deny; here that is the first in registration order, and `first` puts this one ahead."""
        with self._lock:
            key = (hook.group, hook.kind)
            others = tuple(h for h in self._hooks.get(key, ()) if h.name != hook.name)
            self._hooks[key] = (hook, *others) if first else (*others, hook)
        return hook

    def unregister(self, name: str) -> None:
        with self._lock:
            self._hooks = {k: tuple(h for h in v if h.name != name) for k, v in self._hooks.items()}

    @contextlib.contextmanager
    def lifted(self, name: str) -> Iterator[None]:
        """The webhook `name` is not called inside the block (a cluster without it, e.g. KAITO's CRDs only)."""
        with self._lock:
            saved = dict(self._hooks)
        self.unregister(name)
        try:
            yield
        finally:
            with self._lock:
                self._hooks = saved

    def review(self, group: str, kind: str, review: Review, view: ClusterView) -> None:
        """Raise the first webhook's denial; return when every webhook of the kind admits the request."""
        with self._lock:
            hooks = self._hooks.get((group, kind), ())
        if not hooks or (review.obj.get("metadata") or {}).get("deletionTimestamp"):
            return
        for hook in hooks:
            errors = hook.validate(review, view)
            if errors:
                raise denial(hook.name, errors)


__all__ = ["CREATE", "UPDATE", "Admission", "ClusterView", "Review", "Validator", "Webhook", "denial"]
