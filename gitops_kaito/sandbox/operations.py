"""What each API verb does to the store: create, get, list, update, patch (merge/JSON/strategic/apply), delete.

HTTP-free: the HTTP layer (apiserver.py) parses requests and renders results or `ApiError`s.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jsonpatch
import yaml

from gitops_kaito.repo.yamlsource import FAST_LOADER
from gitops_kaito.sandbox import eventsv1, ssa
from gitops_kaito.sandbox.admission import CREATE, UPDATE, Admission, Review
from gitops_kaito.sandbox.builtin import CRD_TYPE, NAMESPACE_TYPE, ResourceType
from gitops_kaito.sandbox.errors import ApiError, already_exists, conflict, invalid, not_found, status_body
from gitops_kaito.sandbox.registry import Registry
from gitops_kaito.sandbox.selectors import matcher, parse_field_selector, parse_label_selector
from gitops_kaito.sandbox.store import Expired, Obj, Store, WatchEvent
from gitops_kaito.sandbox.validation import metadata_errors, string_map_errors

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_IDENTITY_META = ("uid", "creationTimestamp", "resourceVersion", "generation", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "managedFields", "selfLink")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Target:
    """The object (or collection) a request addresses."""

    type: ResourceType
    namespace: str  # "" for cluster-scoped or all namespaces
    name: str = ""
    subresource: str = ""  # "" or "status"


@dataclass(frozen=True)
class WriteOptions:
    dry_run: bool = False
    field_manager: str = ""
    force: bool = False


def field_manager_for(query: dict[str, str], user_agent: str) -> str:
    """The apiserver defaults fieldManager to the User-Agent's product token."""
    return query.get("fieldManager") or (user_agent.split("/")[0] if user_agent else "unknown")


def parse_body(raw: bytes, content_type: str = "application/json") -> Any:
    if not raw:
        raise ApiError(400, "request body is empty")
    try:
        return json.loads(raw)
    except ValueError:
        if "yaml" not in content_type:
            raise ApiError(400, "request body is not valid JSON")
    try:
        return yaml.load(raw, Loader=FAST_LOADER)
    except yaml.YAMLError as exc:
        raise ApiError(400, f"request body is not valid YAML: {exc}")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge_patch(target: Any, patch: Any, list_keys: ssa.ListKeys, path: tuple[str, ...] = ()) -> Any:
    """An approximation of strategic merge: merge patch, lists with known merge keys merge per item.

    Supports the `$patch: delete` directive on list items and `$patch: replace` on maps.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        sub = (*path, key)
        keys = list_keys(sub)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and keys and isinstance(out.get(key), list):
            merged = list(out[key])
            for item in value:
                if not isinstance(item, dict):
                    merged = copy.deepcopy(value)
                    break
                ident = {k: item.get(k) for k in keys}
                idx = next((i for i, cur in enumerate(merged)
                            if isinstance(cur, dict) and all(cur.get(k) == v for k, v in ident.items())), None)
                if item.get("$patch") == "delete":
                    if idx is not None:
                        merged.pop(idx)
                elif idx is not None:
                    merged[idx] = strategic_merge_patch(merged[idx], item, list_keys, (*sub, "[]"))
                else:
                    merged.append({k: v for k, v in item.items() if k != "$patch"})
            out[key] = merged
        else:
            out[key] = strategic_merge_patch(out.get(key), value, list_keys, sub)
    return out


# kube-apiserver's answer to a continue token whose snapshot etcd has compacted (staging/src/k8s.io/apiserver,
# storage/etcd3 at v1.32: the 410 a client-go pager answers by listing again).
CONTINUE_EXPIRED = ("The provided continue parameter is too old to display a consistent list result. You can start a "
                    "new list without the continue parameter.")


def _as_of(current: Iterable[Obj], events: list[WatchEvent], key: Any, namespace: str | None) -> list[Obj]:
    """The objects of `current` as they were before `events` (those of one kind after a resourceVersion): each
    changed object's state before its first later event, objects added since left out, deleted ones put back."""
    before: dict[tuple[str, str], Obj | None] = {}
    for event in events:
        if event.key != key:
            continue
        meta = event.obj["metadata"]
        before.setdefault((meta.get("namespace") or "", meta["name"]), event.prev)
    if not before:
        return list(current)
    merged = {(o["metadata"].get("namespace") or "", o["metadata"]["name"]): o for o in current}
    for pos, old in before.items():
        if namespace is not None and pos[0] != namespace:
            continue
        if old is None:
            merged.pop(pos, None)
        else:
            merged[pos] = old
    return [merged[pos] for pos in sorted(merged)]


class Api:
    """The emulated cluster's state and verbs. Thread-safe: every verb runs under the store lock."""

    def __init__(self, history_limit: int = 50_000) -> None:
        self.store = Store(history_limit)
        self.bookmark_interval_s = 5.0  # how often an idle watch that asked for bookmarks gets one
        # Test hook: watch events (type, object) for which this says True are never delivered to any watcher.
        self.lose_event: Callable[[str, Obj], bool] | None = None
        self.registry = Registry()
        self.admission = Admission()  # no webhook until one is registered (Sandbox registers KAITO's)
        self.lock = self.store.lock
        for ns in INITIAL_NAMESPACES:
            self.create(Target(NAMESPACE_TYPE, ""), {"metadata": {"name": ns}}, WriteOptions(field_manager="sandbox"))

    # ----------------------------------------------------------------- helpers

    def _out(self, t: ResourceType, obj: Obj) -> Obj:
        """An object as seen through version t (custom resources are relabelled, never converted; events.k8s.io
        renames the stored core Event's fields)."""
        if t.group == eventsv1.GROUP:
            return {**eventsv1.to_v1_event(obj), "apiVersion": t.api_version}
        if obj.get("apiVersion") == t.api_version:
            return obj
        out = dict(obj)
        out["apiVersion"] = t.api_version
        return out

    def _in(self, t: ResourceType, body: Any) -> Any:
        """A request body in the stored shape (only events.k8s.io Events differ from it)."""
        if t.group == eventsv1.GROUP and isinstance(body, dict):
            # A core Event always has an involvedObject (a struct in k8s.io/api, serialized even when empty).
            return {"involvedObject": {}, **eventsv1.to_core_event(body), "apiVersion": "v1"}
        return body

    def _matches(self, t: ResourceType, match: Callable[[Obj], bool], obj: Obj) -> bool:
        """Selectors are read against the object as the client sees it (events.k8s.io's regarding.name, ...)."""
        return match(self._out(t, obj)) if t.group == eventsv1.GROUP else match(obj)

    def _scope(self, t: ResourceType, subresource: str) -> dict[str, bool]:
        if not t.status_subresource:
            return {}
        return {"only_status": True} if subresource == "status" else {"skip_status": True}

    def _require_namespace(self, t: ResourceType, namespace: str, creating: bool) -> None:
        if not t.namespaced:
            return
        if not namespace:
            raise ApiError(400, "the namespace of the object must be set")
        ns = self.store.get(NAMESPACE_TYPE.storage_key, "", namespace)
        if ns is None:
            raise not_found("namespaces", "", namespace)
        if creating and ns["metadata"].get("deletionTimestamp"):
            raise ApiError(403, f'unable to create new content in namespace {namespace} because it is being terminated',
                           "Forbidden", {"name": namespace, "kind": "namespaces"})

    def _existing(self, target: Target) -> Obj:
        t = target.type
        self._require_namespace(t, target.namespace, creating=False)
        obj = self.store.get(t.storage_key, target.namespace if t.namespaced else "", target.name)
        if obj is None:
            raise not_found(t.plural, t.group, target.name)
        return obj

    # ----------------------------------------------------------------- reads

    def get(self, target: Target) -> Obj:
        with self.lock:
            return self._out(target.type, self._existing(target))

    def list_objects(self, target: Target, query: dict[str, str]) -> Obj:
        """A LIST, paged with `limit`/`continue` as kube-apiserver pages it: every page is read from the snapshot
        at the first page's resourceVersion (the state then, rebuilt from the watch history), which the continue
        token carries; a token older than the history gets 410 Expired. remainingItemCount only without selectors."""
        t = target.type
        match = matcher(query.get("labelSelector"), query.get("fieldSelector"))
        pinned = parse_field_selector(query.get("fieldSelector")).name()
        equalities = parse_label_selector(query.get("labelSelector")).equalities()
        limit = int(query.get("limit") or 0)
        start: tuple[str, str] | None = None
        at: int | None = None
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"].encode()))
                start, at = (token["ns"], token["name"]), int(token["rv"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "continue key is not valid")
        items: list[Obj] = []
        more: tuple[str, str] | None = None
        remaining = 0
        with self.lock:
            if t.namespaced and target.namespace:
                self._require_namespace(t, target.namespace, creating=False)
            ns = target.namespace if t.namespaced and target.namespace else None
            if at is None:
                at = self.store.rv
            elif at < self.store.compacted_rv:
                raise ApiError(410, CONTINUE_EXPIRED, "Expired")
            if pinned is not None and ns is not None:
                one = self.store.get(t.storage_key, ns, pinned)
                source: Iterable[Obj] = [one] if one is not None else []
            elif equalities:
                label, value = min(equalities, key=lambda kv: self.store.label_count(t.storage_key, *kv))
                source = self.store.with_label(t.storage_key, label, value, ns)
            else:
                source = self.store.iter(t.storage_key, ns)
            if at < self.store.rv:
                source = _as_of(source, self.store.events_after(at), t.storage_key, ns)
            for obj in source:
                meta = obj["metadata"]
                pos = (meta.get("namespace") or "", meta["name"])
                if start is not None and pos <= start:
                    continue
                if not self._matches(t, match, obj):
                    continue
                if more is not None:
                    remaining += 1
                    continue
                if limit and len(items) >= limit:
                    more = (items[-1]["metadata"].get("namespace") or "", items[-1]["metadata"]["name"])
                    if query.get("labelSelector") or query.get("fieldSelector"):
                        break  # the server does not count what remains of a filtered list
                    remaining = 1
                    continue
                items.append(self._out(t, obj))
        metadata: dict[str, Any] = {"resourceVersion": str(at)}
        if more is not None:
            metadata["continue"] = base64.urlsafe_b64encode(
                json.dumps({"ns": more[0], "name": more[1], "rv": at}).encode()
            ).decode()
            if remaining:
                metadata["remainingItemCount"] = remaining
        return {"kind": t.list_kind, "apiVersion": t.api_version, "metadata": metadata, "items": items}

    # ----------------------------------------------------------------- writes

    def create(self, target: Target, body: Any, opts: WriteOptions) -> Obj:
        t = target.type
        body = self._in(t, body)
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request must be an object")
        meta = dict(body.get("metadata") or {})
        if target.subresource:
            raise ApiError(405, f"create is not supported on {t.plural}/{target.subresource}", "MethodNotAllowed")
        with self.lock:
            namespace = target.namespace if t.namespaced else ""
            if t.namespaced:
                if meta.get("namespace") and meta["namespace"] != namespace:
                    raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
                self._require_namespace(t, namespace, creating=True)
            if not meta.get("name") and meta.get("generateName"):
                for _ in range(100):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                    if self.store.get(t.storage_key, namespace, meta["name"]) is None:
                        break
            name = meta.get("name") or ""
            taken = bool(name) and self.store.get(t.storage_key, namespace, name) is not None
            obj = copy.deepcopy(body)
            for k in _IDENTITY_META:
                meta.pop(k, None)
            meta = copy.deepcopy(meta)
            if t.namespaced:
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_iso()
            obj["metadata"] = meta
            obj["apiVersion"] = t.api_version
            obj["kind"] = t.kind
            if t.status_subresource and t.custom:
                obj.pop("status", None)
            mgr = opts.field_manager or "unknown"
            entries = ssa.record_update({}, obj, [], mgr, "", self.registry.list_keys(t), t.api_version, meta["creationTimestamp"], {})
            if taken:  # validation and admission come before storage finds the name taken, as in kube-apiserver
                self._commit(t, obj, None, entries, dry_run=True)
                raise already_exists(t.plural, t.group, name)
            return self._commit(t, obj, None, entries, opts.dry_run)

    def update(self, target: Target, body: Any, opts: WriteOptions) -> Obj:
        t = target.type
        body = self._in(t, body)
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request must be an object")
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != target.name:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        with self.lock:
            old = self._existing(target)
            want_rv = meta.get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise conflict(t.plural, t.group, target.name,
                               "the object has been modified; please apply your changes to the latest version and try again")
            new = self._assemble(t, old, body, target.subresource)  # body is freshly parsed
            entries = ssa.read_managed(old)
            if isinstance(meta.get("managedFields"), list) and meta["managedFields"] != old["metadata"].get("managedFields"):
                entries = ssa.read_managed(body)
            entries = ssa.record_update(old, new, entries, opts.field_manager or "unknown", target.subresource,
                                        self.registry.list_keys(t), t.api_version, now_iso(), self._scope(t, target.subresource))
            return self._commit(t, new, old, entries, opts.dry_run, target.subresource)

    def patch(self, target: Target, raw: bytes, content_type: str, opts: WriteOptions) -> tuple[int, Obj]:
        t = target.type
        ctype = content_type.split(";")[0].strip().lower()
        if ctype == APPLY_PATCH:
            return self.apply(target, parse_body(raw, ctype), opts)
        if ctype not in (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH):
            raise ApiError(415, f"the body of the request was in an unknown format - accepted media types include: "
                           f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}"
                           + ("" if t.custom else f", {STRATEGIC_PATCH}"))
        if ctype == STRATEGIC_PATCH and t.custom:
            raise ApiError(415, f"the body of the request was in an unknown format - accepted media types include: "
                           f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}")
        patch = parse_body(raw, ctype)
        with self.lock:
            old = self._existing(target)
            current = self._out(t, old)
            if ctype == JSON_PATCH:
                if not isinstance(patch, list):
                    raise ApiError(400, "json patch must be a list of operations")
                try:
                    patched = jsonpatch.JsonPatch(patch).apply(current)  # copies internally
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                    raise ApiError(422, f"the server rejected our request due to an error in our request: {exc}")
            elif ctype == MERGE_PATCH:
                if not isinstance(patch, dict):
                    raise ApiError(400, "merge patch must be an object")
                patched = merge_patch(current, patch)
            else:
                if not isinstance(patch, dict):
                    raise ApiError(400, "strategic merge patch must be an object")
                patched = strategic_merge_patch(current, patch, self.registry.list_keys(t))
            if not isinstance(patched, dict):
                raise ApiError(422, "the patched object is not an object")
            pmeta = patched.get("metadata") or {}
            want_rv = pmeta.get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise conflict(t.plural, t.group, target.name,
                               "the object has been modified; please apply your changes to the latest version and try again")
            if pmeta.get("name") != target.name:
                raise ApiError(400, "the name of the object cannot be changed by a patch")
            new = self._assemble(t, old, self._in(t, patched), target.subresource)
            entries = ssa.record_update(old, new, ssa.read_managed(old), opts.field_manager or "unknown",
                                        target.subresource, self.registry.list_keys(t), t.api_version, now_iso(),
                                        self._scope(t, target.subresource))
            return 200, self._commit(t, new, old, entries, opts.dry_run, target.subresource)

    # ----------------------------------------------------------------- the scale subresource

    def get_scale(self, target: Target) -> Obj:
        with self.lock:
            return _scale_of(target.type, self._existing(target))

    def write_scale(self, target: Target, method: str, raw: bytes, content_type: str, opts: WriteOptions) -> Obj:
        """PUT or PATCH (merge or JSON patch) of an autoscaling/v1 Scale: sets spec.replicas of the object, as an
        Update by the request's field manager on subresource "scale" (how kubectl scale, HPA and KEDA write)."""
        t = target.type
        ctype = content_type.split(";")[0].strip().lower()
        body = parse_body(raw, ctype if method == "PATCH" else "application/json")
        with self.lock:
            old = self._existing(target)
            current = _scale_of(t, old)
            if method == "PUT":
                scale = body
            elif ctype == JSON_PATCH and isinstance(body, list):
                try:
                    scale = jsonpatch.JsonPatch(body).apply(current)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                    raise ApiError(422, f"the server rejected our request due to an error in our request: {exc}")
            elif ctype in (MERGE_PATCH, STRATEGIC_PATCH) and isinstance(body, dict):
                scale = merge_patch(current, body)
            else:
                raise ApiError(415, f"unsupported patch of {t.plural}/scale: {ctype}")
            replicas = ((scale or {}).get("spec") or {}).get("replicas") if isinstance(scale, dict) else None
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise invalid("Scale", "autoscaling", target.name,
                              [("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0")])
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["replicas"] = replicas
            entries = ssa.record_update(old, new, ssa.read_managed(old), opts.field_manager or "unknown", "scale",
                                        self.registry.list_keys(t), t.api_version, now_iso(),
                                        self._scope(t, ""))
            return _scale_of(t, self._commit(t, new, old, entries, opts.dry_run))

    def apply(self, target: Target, applied: Any, opts: WriteOptions) -> tuple[int, Obj]:
        t = target.type
        if not isinstance(applied, dict):
            raise ApiError(400, "the apply configuration must be an object")
        if not opts.field_manager:
            raise ApiError(400, "PATCH with apply requires a fieldManager", "BadRequest")
        meta = applied.get("metadata") or {}
        if meta.get("name") and meta["name"] != target.name:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        if applied.get("kind") and applied["kind"] != t.kind:
            raise ApiError(400, f"the kind of the object ({applied['kind']}) does not match the URL ({t.kind})")
        if meta.get("managedFields"):
            raise ApiError(400, "metadata.managedFields must be nil")
        with self.lock:
            namespace = target.namespace if t.namespaced else ""
            self._require_namespace(t, namespace, creating=False)
            old = self.store.get(t.storage_key, namespace, target.name)
            if old is None and target.subresource:
                raise not_found(t.plural, t.group, target.name)
            if old is not None and meta.get("resourceVersion") and meta["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(t.plural, t.group, target.name,
                               "the object has been modified; please apply your changes to the latest version and try again")
            applied = self._normalize_applied(t, applied)  # freshly parsed: no copy needed
            if old is None:
                shell_meta: dict[str, Any] = {"name": target.name}
                if t.namespaced:
                    shell_meta["namespace"] = namespace
                shell: Obj = {"apiVersion": t.api_version, "kind": t.kind, "metadata": shell_meta}
                # Namespace and name are validated by the dry-run create of the merged object below; the
                # empty shell must not be schema-validated (a CRD with a required spec would refuse it).
                live: Obj = shell
                entries: list[ssa.ManagedEntry] = []
            else:
                live = self._out(t, old)
                entries = ssa.read_managed(old)
            stamp = now_iso()
            scope = self._scope(t, target.subresource)
            merged, new_entries, conflicts = ssa.apply(
                live, applied, entries, opts.field_manager, target.subresource, opts.force,
                self.registry.list_keys(t), t.api_version, stamp, scope,
            )
            if conflicts:
                raise ApiError(
                    409,
                    f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: "
                    + "; ".join(c.describe() for c in conflicts),
                    "Conflict",
                    {"name": target.name, "group": t.group, "kind": t.plural,
                     "causes": [{"reason": "FieldManagerConflict", "message": c.describe(),
                                 "field": ".".join(p[2:] for p in c.path if p.startswith("f:"))} for c in conflicts]},
                )
            if old is None:
                merged.setdefault("metadata", {})["name"] = target.name
                created = self.create(target, merged, WriteOptions(dry_run=True, field_manager=opts.field_manager))
                if t.status_subresource and t.custom:
                    created.pop("status", None)
                final = self._commit(t, created, None, new_entries, opts.dry_run)
                return 201, final
            new = self._assemble(t, old, self._in(t, merged), target.subresource)
            return 200, self._commit(t, new, old, new_entries, opts.dry_run, target.subresource)

    def _normalize_applied(self, t: ResourceType, applied: Obj) -> Obj:
        """Prune unknown fields of a custom resource's apply configuration so ownership matches storage."""
        info = self.registry.crd(t)
        if info is not None and info.schema.raw is not None:
            from gitops_kaito.sandbox.schema import prune

            return dict(prune(applied, info.schema.raw, root=True))
        return applied

    def _assemble(self, t: ResourceType, old: Obj, body: Obj, subresource: str) -> Obj:
        """The new stored object from a full body: server-owned metadata kept, status split applied."""
        if subresource == "status":
            new = dict(old)
            new["apiVersion"] = t.api_version
            if "status" in body:
                new["status"] = body["status"]
            else:
                new.pop("status", None)
            new["metadata"] = dict(old["metadata"])
            return new
        new = body
        new["apiVersion"] = t.api_version
        new["kind"] = t.kind
        meta = dict(new.get("metadata") or {})
        old_meta = old["metadata"]
        for k in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generateName"):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        new["metadata"] = meta
        if t.status_subresource:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        return new

    def _commit(self, t: ResourceType, new: Obj, old: Obj | None, entries: list[ssa.ManagedEntry], dry_run: bool,
                subresource: str = "") -> Obj:
        """Validate, admit, default, stamp and store (unless dry-run); no write at all when nothing changed."""
        managed = ssa.render_managed(entries)
        if old is not None:
            # The steady state of a reconciler is a no-op apply: answer it before schema work.
            candidate = dict(new)
            candidate["metadata"] = dict(new["metadata"], resourceVersion=old["metadata"]["resourceVersion"])
            if managed:
                candidate["metadata"]["managedFields"] = managed
            if "generation" in old["metadata"]:
                candidate["metadata"]["generation"] = old["metadata"]["generation"]
            if _same(old, candidate):
                return self._out(t, old)
        meta = new["metadata"]
        info = self.registry.crd(t)
        if info is not None:
            new = info.schema.normalize(new)
            meta = new["metadata"]
        errors = metadata_errors(meta, dns_label_name=t.kind in ("Namespace", "Service"))
        if info is not None:
            errors += info.schema.errors(new)
        if t.kind in ("ConfigMap",):
            errors += string_map_errors(new, "data")
        if t.kind == "Secret":
            errors += string_map_errors(new, "stringData") + string_map_errors(new, "data")
        if t is CRD_TYPE:
            errors += _crd_errors(new)
        if errors:
            raise invalid(t.kind, t.group, meta.get("name") or "", errors)
        if not subresource:  # validating webhooks: after schema validation, before storage (dry runs too)
            self.admission.review(t.group, t.kind, Review(UPDATE if old is not None else CREATE, t.api_version,
                                                          new, old, dry_run), _StoreView(self.store))
        self._kind_defaults(t, new, old)
        if managed:
            meta["managedFields"] = managed
        else:
            meta.pop("managedFields", None)
        if t.generation:
            if old is None:
                meta["generation"] = 1
            else:
                gen = int(old["metadata"].get("generation") or 1)
                meta["generation"] = gen + 1 if _spec_of(old, t) != _spec_of(new, t) else gen
        if old is not None:
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            if _same(old, new):
                return self._out(t, old)
            if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                if dry_run:
                    return new
                self._remove(t, new)
                return new
        if dry_run:
            return new
        meta["resourceVersion"] = self.store.next_rv()
        stored = dict(new)
        if t.custom and t.storage_version and t.storage_version != t.version:
            stored["apiVersion"] = f"{t.group}/{t.storage_version}"
        self.store.put(t.storage_key, stored, old)
        if t is CRD_TYPE:
            self._crd_changed(stored)
        return new

    def _kind_defaults(self, t: ResourceType, new: Obj, old: Obj | None) -> None:
        if t.custom:
            return
        if t.kind == "Namespace":
            status = dict(new.get("status") or {})
            status["phase"] = "Terminating" if new["metadata"].get("deletionTimestamp") else "Active"
            new["status"] = status
        elif t.kind == "Secret":
            string_data = new.pop("stringData", None)
            if string_data:
                data = dict(new.get("data") or {})
                for k, v in string_data.items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
                new["data"] = data
            new.setdefault("type", "Opaque")
        elif t.kind == "Service":
            spec = dict(new.get("spec") or {})
            spec.setdefault("type", "ClusterIP")
            if old is not None and (old.get("spec") or {}).get("clusterIP"):
                spec.setdefault("clusterIP", old["spec"]["clusterIP"])
            if "clusterIP" not in spec:
                n = int(uuid.uuid4().int % 65000) + 10
                spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
            new["spec"] = spec
        elif t.kind == "Pod":
            status = dict(new.get("status") or {})
            status.setdefault("phase", "Pending")
            new["status"] = status

    # ----------------------------------------------------------------- delete

    def delete(self, target: Target, options: dict[str, Any], dry_run: bool) -> Obj:
        t = target.type
        with self.lock:
            old = self._existing(target)
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old["metadata"].get("uid"):
                raise conflict(t.plural, t.group, target.name, "Precondition failed: UID in precondition does not match")
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"].get("resourceVersion"):
                raise conflict(t.plural, t.group, target.name,
                               "Precondition failed: ResourceVersion in precondition does not match")
            return self._delete(t, old, dry_run)

    def _delete(self, t: ResourceType, old: Obj, dry_run: bool) -> Obj:
        meta = old["metadata"]
        if t.kind == "Namespace" and not t.group:
            return self._delete_namespace(old, dry_run)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return self._out(t, old)
            new = dict(old)
            new["metadata"] = dict(meta, deletionTimestamp=now_iso(), deletionGracePeriodSeconds=0)
            if dry_run:
                return self._out(t, new)
            new["metadata"]["resourceVersion"] = self.store.next_rv()
            self.store.put(t.storage_key, new, old)
            return self._out(t, new)
        if dry_run:
            return self._out(t, old)
        return self._remove(t, old)

    def _remove(self, t: ResourceType, obj: Obj) -> Obj:
        final = dict(obj)
        final["metadata"] = dict(obj["metadata"], resourceVersion=self.store.next_rv())
        self.store.delete(t.storage_key, final)
        if t is CRD_TYPE:
            self._crd_deleted(final)
        ns = final["metadata"].get("namespace")
        if ns:
            self._maybe_finish_namespace(ns)
        return self._out(t, final)

    def _delete_namespace(self, old: Obj, dry_run: bool) -> Obj:
        if dry_run:
            return old
        name = old["metadata"]["name"]
        current = old
        if not old["metadata"].get("deletionTimestamp"):
            current = dict(old)
            current["metadata"] = dict(old["metadata"], deletionTimestamp=now_iso(), resourceVersion=self.store.next_rv())
            current["status"] = dict(old.get("status") or {}, phase="Terminating")
            self.store.put(NAMESPACE_TYPE.storage_key, current, old)
        for t in list(self.registry.types.values()):
            if not t.namespaced or t.version != (t.storage_version or t.version):
                continue
            for obj in list(self.store.iter(t.storage_key, name)):
                self._delete(t, obj, False)
        self._maybe_finish_namespace(name)
        return self.store.get(NAMESPACE_TYPE.storage_key, "", name) or current

    def _maybe_finish_namespace(self, name: str) -> None:
        ns = self.store.get(NAMESPACE_TYPE.storage_key, "", name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if self.store.count_in_namespace(name) == 0:
            self._remove(NAMESPACE_TYPE, ns)

    def delete_collection(self, target: Target, query: dict[str, str], dry_run: bool) -> Obj:
        with self.lock:
            listing = self.list_objects(target, {k: v for k, v in query.items() if k in ("labelSelector", "fieldSelector")})
            for item in listing["items"]:
                meta = item["metadata"]
                obj = self.store.get(target.type.storage_key, meta.get("namespace") or "", meta["name"])
                if obj is not None:
                    self._delete(target.type, obj, dry_run)
        return listing

    # ----------------------------------------------------------------- CRDs

    def _crd_changed(self, crd: Obj) -> None:
        self.registry.install(crd)
        status = crd.get("status") or {}
        if any(c.get("type") == "Established" for c in status.get("conditions") or []):
            return
        stamp = now_iso()
        names = (crd.get("spec") or {}).get("names") or {}
        accepted = dict(names)
        accepted.setdefault("singular", str(names.get("kind", "")).lower())
        accepted.setdefault("listKind", f"{names.get('kind', '')}List")
        new = dict(crd)
        new["status"] = {
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": stamp},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": stamp},
            ],
            "acceptedNames": accepted,
            "storedVersions": [v["name"] for v in (crd.get("spec") or {}).get("versions") or [] if v.get("storage")],
        }
        new["metadata"] = dict(crd["metadata"], resourceVersion=self.store.next_rv())
        self.store.put(CRD_TYPE.storage_key, new, crd)

    def _crd_deleted(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        removed = self.registry.uninstall(crd["metadata"]["name"])
        if removed:
            t = removed[0]
            for obj in list(self.store.iter(t.storage_key)):
                final = dict(obj)
                final["metadata"] = dict(obj["metadata"], resourceVersion=self.store.next_rv())
                self.store.delete(t.storage_key, final)
        del spec

    # ----------------------------------------------------------------- watch

    def watch(
        self,
        target: Target,
        query: dict[str, str],
        emit: Callable[[Obj], bool],
        stop: threading.Event,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Stream watch events through emit (returns False when the client is gone) until timeout or stop."""
        t = target.type
        match = matcher(query.get("labelSelector"), query.get("fieldSelector"))
        ns = target.namespace if t.namespaced else ""
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        rv_param = query.get("resourceVersion") or ""
        initial: list[Obj] = []
        with self.lock:
            if t.namespaced and ns:
                self._require_namespace(t, ns, creating=False)
            if rv_param in ("", "0"):
                initial = [self._out(t, o) for o in self.store.iter(t.storage_key, ns or None)
                           if self._matches(t, match, o)]
                last = self.store.rv
            else:
                try:
                    last = int(rv_param)
                    self.store.events_after(last)
                except (ValueError, Expired):
                    emit(_expired_event(rv_param))
                    return
        if on_ready is not None:
            on_ready()  # headers go out now, so clients see the stream open before the first event
        for obj in initial:
            if not emit({"type": "ADDED", "object": obj}):
                return
        # allowWatchBookmarks: while nothing of this kind happens, the stream still tells its client how far it got,
        # so a quiet kind's resourceVersion does not fall out of the history (kube-apiserver sends one about every
        # minute and one as a timeout ends the stream).
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true", "True")
        interval = self.bookmark_interval_s
        next_mark = time.monotonic() + interval

        def bookmark() -> bool:
            mark = {"kind": t.kind, "apiVersion": t.api_version, "metadata": {"resourceVersion": str(last)}}
            lost = self.lose_event
            if lost is not None and lost("BOOKMARK", mark):
                return True
            return emit({"type": "BOOKMARK", "object": mark})

        while not stop.is_set():
            events: list[WatchEvent] = []
            with self.store.cond:
                while True:
                    if self.store.closed or stop.is_set():
                        return
                    try:
                        events = self.store.events_after(last)
                    except Expired:
                        emit(_expired_event(str(last)))
                        return
                    if events:
                        break
                    now = time.monotonic()
                    remaining = deadline - now
                    if remaining <= 0 or (bookmarks and now >= next_mark):
                        break
                    self.store.cond.wait(min(remaining, 0.5, next_mark - now if bookmarks else 0.5))
            for ev in events:
                last = ev.rv
                if ev.key != t.storage_key:
                    continue
                if ns and (ev.obj["metadata"].get("namespace") or "") != ns:
                    continue
                now_in = self._matches(t, match, ev.obj)
                was_in = ev.prev is not None and self._matches(t, match, ev.prev)
                if ev.type == "DELETED":
                    etype = "DELETED" if (now_in or was_in) else ""
                elif ev.type == "ADDED":
                    etype = "ADDED" if now_in else ""
                else:
                    etype = ("MODIFIED" if was_in else "ADDED") if now_in else ("DELETED" if was_in else "")
                lost = self.lose_event
                if etype and lost is not None and lost(etype, ev.obj):
                    continue  # the test hook's "missed event": stored, never delivered
                if etype and not emit({"type": etype, "object": self._out(t, ev.obj)}):
                    return
            now = time.monotonic()
            if now >= deadline:
                if bookmarks:
                    bookmark()
                return
            if bookmarks and now >= next_mark:
                if not bookmark():
                    return
                next_mark = now + interval


def _scale_of(t: ResourceType, obj: Obj) -> Obj:
    """The autoscaling/v1 Scale view of an object (.spec.replicas, .status.replicas, .status.selector: the paths
    every CRD in deploy/crds/ with a scale subresource declares)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    out: Obj = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                             if k in meta},
                "spec": {"replicas": int((obj.get("spec") or {}).get("replicas") or 0)},
                "status": {"replicas": int(status.get("replicas") or 0)}}
    if status.get("selector"):
        out["status"]["selector"] = status["selector"]
    return out


def _expired_event(rv: str) -> Obj:
    return {
        "type": "ERROR",
        "object": status_body(410, "Expired", f"too old resource version: {rv}"),
    }


class _StoreView:
    """What a webhook reads: the store as it is, under the lock the verb already holds."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, group: str, plural: str, namespace: str, name: str) -> Obj | None:
        return self._store.get((group, plural), namespace, name)

    def list(self, group: str, plural: str) -> list[Obj]:
        return list(self._store.iter((group, plural)))


def _spec_of(obj: Obj, t: ResourceType) -> Obj:
    """What bumps generation: everything but metadata (and status, when it is a subresource)."""
    skip = ("metadata", "apiVersion", "kind", "status") if t.status_subresource else ("metadata", "apiVersion", "kind")
    return {k: v for k, v in obj.items() if k not in skip}


def _same(old: Obj, new: Obj) -> bool:
    """Equal apart from managedFields timestamps (a no-op write must not bump resourceVersion)."""
    if {k: v for k, v in old.items() if k not in ("metadata", "apiVersion")} != {
        k: v for k, v in new.items() if k not in ("metadata", "apiVersion")
    }:
        return False
    om, nm = dict(old["metadata"]), dict(new["metadata"])
    omf, nmf = om.pop("managedFields", None) or [], nm.pop("managedFields", None) or []
    if om != nm:
        return False
    strip = lambda entries: [{k: v for k, v in e.items() if k != "time"} for e in entries]  # noqa: E731
    return strip(omf) == strip(nmf)


def _crd_errors(crd: Obj) -> list[tuple[str, str]]:
    spec = crd.get("spec") or {}
    errors: list[tuple[str, str]] = []
    names = spec.get("names") or {}
    if not spec.get("group"):
        errors.append(("spec.group", "Required value"))
    if not names.get("plural") or not names.get("kind"):
        errors.append(("spec.names", "Required value: plural and kind are required"))
    elif crd["metadata"].get("name") != f"{names['plural']}.{spec.get('group')}":
        errors.append(("metadata.name", f'Invalid value: "{crd["metadata"].get("name")}": must be spec.names.plural+"."+spec.group'))
    versions = spec.get("versions") or []
    if not versions:
        errors.append(("spec.versions", "Required value"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errors.append(("spec.versions", "Invalid value: must have exactly one version marked as storage version"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errors.append(("spec.scope", "Unsupported value: supported values: \"Cluster\", \"Namespaced\""))
    return errors
