"""Pure: requests that wait for other requests (a RAG engine for its model, a model for the tuning run its adapter
comes from), and whether what they wait for is done in the cluster.

A waiting request's workload is not created (nor replaced) until its dependency is done; a model whose adapter comes
from a tuning run does not take a new such adapter by update either, since KAITO would pull an image not pushed yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gitops_kaito.core import health
from gitops_kaito.model.objects import Manifest
from gitops_kaito.model.ownership import ANNOTATION_REQUEST_DIGEST
from gitops_kaito.model.states import ModelState


@dataclass(frozen=True)
class Dependency:
    """`model_id` needs `on` to be `done` (Ready for a model, Succeeded for a tuning run) before its workload goes."""

    model_id: str
    on: str
    done: ModelState
    holds_updates: bool  # also hold updates of the workload (a new adapter from a run not finished yet)
    digest: str = ""  # a tuning run: the request digest the run must be of (an older run's output is not it)


@dataclass(frozen=True)
class Wait:
    """Why a request's workload is held back in this pass."""

    model_id: str
    on: str
    reason: str
    holds_updates: bool


def dependencies(resolved: Iterable[Any]) -> tuple[Dependency, ...]:
    """Every dependency between the repository's requests (duck-typed: no kind module is imported here)."""
    by_id = {r.request.id: r for r in resolved}
    out: list[Dependency] = []
    for rid, item in sorted(by_id.items()):
        llm = getattr(item.request, "llm_model_id", None)
        if llm:
            out.append(Dependency(rid, llm, ModelState.READY, holds_updates=False))
        for adapter in getattr(item.request, "adapters", ()) or ():
            tuning = getattr(adapter, "tuning", None)
            if not tuning:
                continue
            run_id = f"{item.request.namespace}.{tuning}"
            run = by_id.get(run_id)
            digest = str(getattr(run.request, "digest", "")) if run is not None else ""
            out.append(Dependency(rid, run_id, ModelState.SUCCEEDED, holds_updates=True, digest=digest))
    return tuple(out)


def waits(deps: Iterable[Dependency], live: Mapping[str, Manifest] | None,
          suspended: Iterable[str] = ()) -> dict[str, Wait]:
    """The requests that must wait in this pass, with why. `live`: each request's workload object by request id
    (None offline: nothing is known about the cluster, so every dependent waits until its dependency is done)."""
    paused = set(suspended)
    out: dict[str, Wait] = {}
    for dep in deps:
        if dep.model_id in out:
            continue
        word = "Ready" if dep.done == ModelState.READY else "Succeeded"
        if dep.on in paused:
            out[dep.model_id] = Wait(dep.model_id, dep.on, f"waits for {dep.on}, which is suspended",
                                     dep.holds_updates)
            continue
        if live is None:
            out[dep.model_id] = Wait(dep.model_id, dep.on, f"applied once {dep.on} is {word}", dep.holds_updates)
            continue
        obj = live.get(dep.on)
        state = health.assess(obj).state if obj is not None else ModelState.PENDING
        current = not dep.digest or (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(
            ANNOTATION_REQUEST_DIGEST) == dep.digest
        if state != dep.done or not current:
            now = str(state) if current else "an earlier run"
            out[dep.model_id] = Wait(dep.model_id, dep.on, f"waiting for {dep.on} to be {word} (now {now})",
                                     dep.holds_updates)
    return out
