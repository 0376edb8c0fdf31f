"""Pure: a plan as people read it: text rows, the JSON document, the pull-request comment (markdown, split to
GitHub's size), and an object's diff; with the cost per hour before and after, and the GPU nodes it adds.

`plan`, `diff`, the GitHub workflow and the MCP server all print through here; nothing here reads a cluster or git.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

from gitops_kaito.core.plan import NEW_RUN, Action, Change, Plan
from gitops_kaito.core.preflight import ClusterCheck
from gitops_kaito.core.render import Desired
from gitops_kaito.model.objects import Manifest, comparable, merge_partial, owned_fields, project
from gitops_kaito.repo.catalog import price_for
from gitops_kaito.repo.resolve import ResolvedModel

WORKING_TREE = "working tree"

COMMENT_LIMIT = 65_000  # GitHub refuses comments over 65,536 characters
COMMENT_MARKER = "<!-- gitops-kaito plan: comment {i} of {n} -->"
_POOL_SYMBOL = {"create": "+", "scale": "~", "update": "~", "retry": "~", "replace": "-/+", "delete": "-",
                "wait": "…", "conflict": "!", "blocked": "!"}
_SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.REPLACE: "-/+", Action.DELETE: "-",
           Action.BLOCKED: "!", Action.NOOP: "="}
DRIFT_SYMBOL, DRIFT_ACTION = "?", "drift"  # drift reported, not corrected (a NOOP change with drift)



@dataclass(frozen=True)
class Cost:
    """What the rendered models cost per hour; `known` is False when some model's SKU has no price."""

    per_hour: float
    known: bool


@dataclass(frozen=True)
class OfflinePlan:
    """The head's desired state planned against the base's rendering, as if the base had been applied."""

    base_ref: str  # as the user wrote it, e.g. origin/main
    base_sha: str
    head_ref: str  # WORKING_TREE or the --head revision
    base: Desired
    head: Desired
    plan: Plan
    before: Cost
    after: Cost

    @property
    def cost_change(self) -> float:
        return self.after.per_hour - self.before.per_hour

    @property
    def base_errors(self) -> tuple[str, ...]:
        """Load errors at the base: those models are planned as absent there (the cluster may hold more)."""
        return self.base.errors


def shown_changes(plan: Plan) -> tuple[Change, ...]:
    """What plan output lists object by object: the changes a sync makes and the drift it leaves, in plan order."""
    return tuple(c for c in plan.changes if c.action != Action.NOOP or c.drift_reported)


def _label(change: Change) -> tuple[str, str]:
    """(symbol, action word) of a change as the plan prints it."""
    if change.drift_reported:
        return DRIFT_SYMBOL, DRIFT_ACTION
    if change.action == Action.REPLACE and change.reason.startswith(NEW_RUN):
        return _SYMBOL[change.action], NEW_RUN  # a tuning request changed: KAITO trains again
    return _SYMBOL[change.action], change.action.value


# ---------------------------------------------------------------------------------------------- diff


def _yaml(obj: Any) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines(keepends=True)


def _sides(change: Change) -> tuple[Any, Any]:
    """Live restricted to what we manage, and desired, both normalised the way planning compares them."""
    desired = change.desired
    if desired is not None and change.handoff is not None and change.action in (Action.CREATE, Action.REPLACE):
        desired = merge_partial(desired, change.handoff)  # set once at creation: shown on the create
    want = comparable(desired) if desired is not None else None
    if change.live is None:
        return None, want
    if change.desired is None:
        live = comparable({k: v for k, v in change.live.items() if k != "status"})
        return live, None
    return comparable(project(change.live, change.desired, owned_fields(change.live))), want


def before_label(offline: OfflinePlan | None) -> str:
    """What the left side of a diff is: the cluster, or the base revision of an offline plan."""
    return offline.base_ref if offline is not None else "live"


def object_diff(change: Change, before: str = "live") -> str:
    live, want = _sides(change)
    if change.action in (Action.DELETE, Action.BLOCKED) and change.desired is None:
        want = None
    symbol, action = _label(change)
    head = f"{symbol} {action} {change.ref} ({change.model_id}): {change.reason}\n"
    lines = difflib.unified_diff(_yaml(live), _yaml(want), fromfile=f"{before}/{change.ref}",
                                 tofile=f"desired/{change.ref}", n=3)
    return head + "".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- text / json


def _signed_money(value: float) -> str:
    return f"{'-' if value < 0 else '+'}${abs(value):,.2f}/h"


def _cost_line(offline: OfflinePlan, bold: bool = False) -> str:
    """'+$3.67/h ($7.34/h at origin/main -> $11.01/h)'; '+ unknown' when a side has a SKU without a price."""
    unknown = "" if offline.before.known and offline.after.known else " + unknown"
    b = "**" if bold else ""
    where = f"`{offline.base_ref}`" if bold else offline.base_ref
    return (f"{b}{_signed_money(offline.cost_change)}{unknown}{b} ({_money(offline.before.per_hour)}/h at {where} "
            f"-> {_money(offline.after.per_hour)}/h)")


def _no_changes(offline: OfflinePlan | None, drifted: int = 0) -> str:
    if offline is None:
        if drifted:
            return (f"No changes: nothing to write. {drifted} object(s) differ from the repository by drift left in "
                    "place (drift: report): reported, not corrected.")
        return "No changes: the cluster matches the repository."
    return f"No changes: the repository renders the same as {offline.base_ref}."


def _offline_note(offline: OfflinePlan, code: bool = False) -> str:
    head = "the working tree" if offline.head_ref == WORKING_TREE else offline.head_ref
    base = f"`{offline.base_ref}`" if code else offline.base_ref
    return (f"Planned offline: {head} against {base} ({offline.base_sha[:12]}) as if it were applied; "
            f"no cluster was read, so drift and objects made outside gitops-kaito do not show.")


def write_text(desired: Desired, plan: Plan, out: TextIO, offline: OfflinePlan | None = None,
               check: ClusterCheck | None = None) -> None:
    """`check`: what the cluster said before anything would be written (served APIs, refusals); None offline."""
    if offline is not None:
        print(_offline_note(offline), file=out)
        for err in offline.base_errors:
            print(f"warning: at {offline.base_ref}: {err} (planned as absent there)", file=out)
    if check is not None:
        print(check.served_line(), file=out)
    for err in desired.errors:
        print(f"error: {err}", file=out)
    for refusal in check.refused if check is not None else ():
        print(f"error: {refusal.model_id}: {refusal.text()}", file=out)
    for mid, note in check.notes if check is not None else ():
        print(f"note: {mid}: {note}", file=out)
    rows = model_rows(desired, plan, check)
    for mid, note in _uncataloged_notes(rows):
        print(f"note: {mid}: {note}", file=out)
    for mid, why in plan.waits:
        print(f"waits: {mid}: {why}", file=out)
    for row in rows:
        if row.get("replicas") and row["action"] not in ("delete", "invalid", "suspend"):
            print(f"note: {row['model']}: InferenceSet of {replicas_cell(row)} replicas x {row['nodesPerReplica']} "
                  f"node(s), {row['gpus']} GPUs, {_money(row['pricePerHour'])}/h"
                  + (f"; {row['scaleNote']}" if row.get("scaleNote") else ""), file=out)
    if not plan.has_changes:
        print(_no_changes(offline, len(plan.drift_reported)), file=out)
    for change in shown_changes(plan):
        symbol, action = _label(change)
        drift = " [drift]" if change.drift and not change.drift_reported else ""
        print(f"{symbol:>3} {action:<7} {change.ref}{drift}  ({change.reason})", file=out)
        for op in change.patch:
            value = f" {json.dumps(op['value'])}" if "value" in op else ""
            print(f"        {op['op']} {op['path']}{value}", file=out)
    for pool in plan.pending_pools:
        row = pool.row()
        print(f"{_POOL_SYMBOL.get(pool.action, '!'):>3} {pool.action:<7} AgentPool/{pool.pool} ({pool.model_id}): "
              f"{row['nodes']} x {row['vmSize']}"
              + (f", {_money(row['pricePerHour'])}/h" if row["pricePerHour"] is not None else "")
              + (f"  ({row['reason']})" if row["reason"] else ""), file=out)
    if plan.prune_refused:
        print(plan.prune_refused, file=out)
    counts = plan.counts()
    pools = f", {len(plan.pending_pools)} agent pool change(s)" if plan.pending_pools else ""
    drifted = (f"; {counts['driftReported']} drifted, reported and not corrected (drift: report)"
               if counts["driftReported"] else "")
    print(f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['replace']} to replace, "
          f"{counts['delete']} to delete, {counts['blocked']} blocked{pools}{drifted}.", file=out)
    if offline is not None:
        print(f"Change in cost per hour: {_cost_line(offline)}", file=out)


def plan_json(desired: Desired, plan: Plan, offline: OfflinePlan | None = None,
              check: ClusterCheck | None = None) -> dict[str, Any]:
    out = _plan_json(desired, plan, check)
    if check is not None:
        out["cluster"] = {"serves": [f"{v} {k}" for v, k in check.served],
                          "notServed": [f"{v} {k}" for v, k in check.not_served]}
        out["refused"] = [{"model": r.model_id, "object": str(r.ref) if r.ref else None, "message": r.message}
                          for r in check.refused]
        out["notes"] = [{"model": mid, "note": note} for mid, note in check.notes]
    if offline is not None:
        out["offline"] = {
            "base": offline.base_ref, "baseSha": offline.base_sha, "head": offline.head_ref,
            "baseErrors": list(offline.base_errors),
            "costPerHour": {"before": offline.before.per_hour, "after": offline.after.per_hour,
                            "change": round(offline.cost_change, 6),
                            "known": offline.before.known and offline.after.known},
        }
    return out


def _plan_json(desired: Desired, plan: Plan, check: ClusterCheck | None = None) -> dict[str, Any]:
    return {
        "hasChanges": plan.has_changes,
        "pruneRefused": plan.prune_refused or None,
        "errors": list(desired.errors),
        "counts": plan.counts(),
        "models": model_rows(desired, plan, check),
        "changes": [{
            "object": str(c.ref), "apiVersion": c.ref.api_version, "kind": c.ref.kind,
            "namespace": c.ref.namespace or None, "name": c.ref.name, "model": c.model_id,
            "action": c.action.value, "wave": c.wave.name, "drift": c.drift, "driftReported": c.drift_reported,
            "reason": c.reason, "immutable": list(c.immutable), "patch": [dict(op) for op in c.patch],
            **({"driftBy": list(c.drift_by)} if c.drift else {}),
        } for c in plan.changes],
        # Objects changed in the cluster and left so (drift: report): not in hasChanges, a sync writes nothing.
        "driftReported": [{"object": str(c.ref), "model": c.model_id, "fields": list(c.fields),
                           "by": list(c.drift_by), "immutable": list(c.immutable)} for c in plan.drift_reported],
        "nodePools": [p.row() for p in plan.node_pools],
        "newNodes": new_nodes(desired, plan),
        "waits": [{"model": mid, "reason": why} for mid, why in plan.waits],
    }


def new_nodes(desired: Desired, plan: Plan) -> list[dict[str, Any]]:
    """The GPU nodes this plan makes per model: NodeClaims/Machines (nodeclaim, machine) or an agent pool (aks)."""
    models = {r.model.request.id: r.model for r in desired.rendered}
    rows: list[dict[str, Any]] = []
    for mid in plan.model_ids:
        made = [c for c in plan.for_model(mid) if c.ref.kind in ("NodeClaim", "Machine")
                and c.action in (Action.CREATE, Action.REPLACE)]
        if made:
            m = models.get(mid)
            sku = m.sku.name if m is not None and m.sku is not None else None
            price = m.price_per_hour / m.nodes if m is not None and m.price_per_hour and m.nodes else None
            rows.append({"model": mid, "mode": made[0].ref.kind.lower(), "what": made[0].ref.kind,
                         "count": len(made), "sku": sku,
                         "pricePerHour": price * len(made) if price is not None else None})
    for pool in plan.node_pools:
        if pool.action in ("create", "replace") or (pool.action == "scale" and (pool.live_count or 0) < pool.count):
            count = pool.count - (pool.live_count or 0) if pool.action == "scale" else pool.count
            per_node = pool.price_per_hour / pool.count if pool.price_per_hour and pool.count else None
            rows.append({"model": pool.model_id, "mode": "aks", "what": f"AgentPool {pool.pool}", "count": count,
                         "sku": pool.vm_size, "pricePerHour": per_node * count if per_node is not None else None})
    return sorted(rows, key=lambda r: (r["model"], r["mode"]))


# ---------------------------------------------------------------------------------------------- markdown


def model_action(changes: Sequence[Change]) -> str:
    actions = {c.action for c in changes}
    for action in (Action.BLOCKED, Action.REPLACE):
        if action in actions:
            if action == Action.REPLACE and any(c.reason.startswith(NEW_RUN) for c in changes):
                return NEW_RUN
            return action.value
    if any(c.switches_from is not None for c in changes):  # Workspace <-> InferenceSet: what serves it is replaced
        return Action.REPLACE.value
    pending = actions - {Action.NOOP}
    if pending == {Action.CREATE}:
        return "create"
    if pending == {Action.DELETE}:
        return "update" if any(c.desired is not None for c in changes) else "delete"  # else: a stale object
    if pending:
        return "update"
    return DRIFT_ACTION if any(c.drift_reported for c in changes) else "no change"


def model_rows(desired: Desired, plan: Plan, check: ClusterCheck | None = None) -> list[dict[str, Any]]:
    rendered = {r.model.request.id: r for r in desired.rendered}
    refused = {r.model_id: r for r in check.refused} if check is not None else {}
    invalid = dict(desired.invalid)
    # Agent pool actions by model, gathered once: a scan of every pool per model grew with models x pools.
    pool_actions_of: dict[str, set[str]] = {}
    for p in plan.node_pools:
        if p.mutates or p.action == "blocked":
            pool_actions_of.setdefault(p.model_id, set()).add(p.action)
    rows = []
    for mid in sorted(set(rendered) | set(plan.model_ids) | set(invalid)):
        r = rendered.get(mid)
        m = r.model if r else None
        action = "invalid" if mid in invalid else model_action(plan.for_model(mid))
        if action == "no change":  # aks mode: the agent pool may change while the Workspace does not
            pool_actions = pool_actions_of.get(mid, set())
            action = next((a for a in ("blocked", "replace") if a in pool_actions), "update" if pool_actions else action)
        if r is not None and r.suspended and action in ("delete", "no change"):
            action = "suspend"
        if mid in refused and action != "invalid":
            action = REFUSED
        live_ws = next((c.live for c in plan.for_model(mid) if c.ref.kind == "Workspace" and c.live), None)
        live_set = next((c.live for c in plan.for_model(mid) if c.ref.kind == "InferenceSet" and c.live), None)
        shown = m is not None and not (r and r.suspended)
        row = {
            "model": mid, "action": action,
            "preset": m.summary if m else (_get(live_ws, "inference", "preset", "name")
                                           or _get(live_set, "spec", "template", "inference", "preset", "name")),
            "sku": m.sku.name if m and m.sku else (None if m else (
                _get(live_ws, "resource", "instanceType")
                or _get(live_set, "spec", "template", "resource", "instanceType"))),
            "nodes": m.nodes if m and shown else None,
            "gpus": m.gpus if m and shown else None,
            "pricePerHour": m.price_per_hour if m and shown else None,
            "path": m.request.path if m else None,
            "uncataloged": bool(m and m.uncataloged),
            "note": invalid.get(mid, "") or (refused[mid].text() if mid in refused else "")
            or (m.note if m and shown else ""),
            "replicas": None,
            "waits": plan.waits_for(mid) or None,
        }
        if isinstance(m, ResolvedModel) and m.replicas is not None and shown:
            row.update(_replica_columns(m, live_set))
        rows.append(row)
    return rows


def _replica_columns(m: ResolvedModel, live_set: Manifest | None) -> dict[str, Any]:
    """An InferenceSet's row: replicas (under an autoscaler: the live count once it exists, with the bounds), and
    nodes, GPUs and price for all of them; the price at maxReplicas in the note."""
    scale = m.request.autoscale
    live = _get(live_set, "spec", "replicas") if scale is not None else None
    replicas = live if isinstance(live, int) else (m.replicas or 0)
    nodes = m.nodes * replicas
    out: dict[str, Any] = {
        "replicas": {"desired": replicas, "autoscaled": scale is not None,
                     "min": scale.min_replicas if scale else None, "max": scale.max_replicas if scale else None},
        "nodesPerReplica": m.nodes, "nodes": nodes,
        "gpus": nodes * m.sku.gpu_count if m.sku is not None else m.gpus,
        "pricePerHour": price_for(m.sku, nodes) if m.sku is not None else m.price_per_hour,
    }
    if scale is not None and m.sku is not None:
        top = price_for(m.sku, m.nodes * scale.max_replicas)
        if top is not None:
            out["scaleNote"] = (f"autoscaled {scale.min_replicas}-{scale.max_replicas} replicas: up to {_money(top)}/h at "
                           f"{scale.max_replicas} ({m.nodes * scale.max_replicas} nodes)")
    return out


def replicas_cell(row: dict[str, Any]) -> str:
    """"3", or "2 (1–4, autoscaled)"."""
    rep = row.get("replicas")
    if not rep:
        return "–"
    return f"{rep['desired']} ({rep['min']}–{rep['max']}, autoscaled)" if rep["autoscaled"] else str(rep["desired"])


def _uncataloged_notes(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(model, note) for each model planned from a Hugging Face id outside the catalog: its nodes and price
    rest on the request, not on a size the catalog knows."""
    return [(row["model"], row["note"]) for row in rows
            if row["uncataloged"] and row["note"] and row["action"] not in ("delete", "invalid", "suspend")]


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _money(value: float | None) -> str:
    return f"${value:,.2f}" if value is not None else "–"


def _cell(value: Any) -> str:
    return "–" if value is None or value == "" else str(value).replace("|", "\\|")


REFUSED = "refused"  # the cluster would refuse the model (preflight): nothing of it would be written

_ICON = {REFUSED: "⛔ refused", "create": "🟢 create", "update": "🟡 update", "replace": "🟠 replace", "delete": "🔴 delete",
         "blocked": "⛔ blocked", "invalid": "❌ invalid", "suspend": "⏸️ suspend", "no change": "no change",
         DRIFT_ACTION: "🟣 drift (not corrected)", NEW_RUN: "🔁 new run"}


def markdown_parts(desired: Desired, plan: Plan, offline: OfflinePlan | None = None,
                   check: ClusterCheck | None = None) -> list[str]:
    """The comment as units that are never split: a summary first, then one <details> block per object."""
    rows = model_rows(desired, plan, check)
    counts = plan.counts()
    lines = ["### gitops-kaito plan", ""]
    if offline is not None:
        lines += [_offline_note(offline, code=True), ""]
    if check is not None:
        lines += [check.served_line(), ""]
    if plan.has_changes:
        lines.append(f"**{counts['create']}** to create, **{counts['update']}** to update, "
                     f"**{counts['replace']}** to replace, **{counts['delete']}** to delete"
                     + (f", **{counts['blocked']}** blocked" if counts["blocked"] else "")
                     + (f" ({counts['drift']} drifted in the cluster)" if counts["drift"] else "")
                     + (f"; **{counts['driftReported']}** drifted, reported and not corrected (drift: report)"
                        if counts["driftReported"] else "") + ".")
    else:
        lines.append(_no_changes(offline, counts["driftReported"]))
    with_replicas = any(row.get("replicas") for row in rows)  # the column only when some model is an InferenceSet
    lines += ["", "| Model | Action | Preset | GPU SKU |" + (" Replicas |" if with_replicas else "")
              + " Nodes | GPUs | Price / hour |",
              "|---|---|---|---|" + ("---:|" if with_replicas else "") + "---:|---:|---:|"]
    total = 0.0
    total_known = True
    for row in rows:
        if row["pricePerHour"] is not None:
            total += row["pricePerHour"]
        elif row["nodes"] and row["action"] not in ("delete", "invalid"):
            total_known = False
        lines.append(f"| `{row['model']}` | {_ICON.get(row['action'], row['action'])} | {_cell(row['preset'])} | "
                     f"{_cell(row['sku'])} | " + (f"{replicas_cell(row)} | " if with_replicas else "")
                     + f"{_cell(row['nodes'])} | {_cell(row['gpus'])} | {_money(row['pricePerHour'])} |")
    gpus = sum(r["gpus"] or 0 for r in rows if r["action"] not in ("delete", "invalid"))
    lines.append(f"| **Total after this change** | | | | | {'| ' if with_replicas else ''}**{gpus}** | "
                 f"**{_money(total)}{'' if total_known else ' + unknown'}** |")
    if offline is not None:
        lines += ["", f"Change in cost per hour: {_cost_line(offline, bold=True)}"]
    notes = []
    if plan.prune_refused:
        notes.append(f"> [!WARNING]\n> {plan.prune_refused}")
    if offline is not None:
        notes += [f"> [!NOTE]\n> at `{offline.base_ref}`: `{err}` (planned as absent there)"
                  for err in offline.base_errors]
    for err in desired.errors:
        notes.append(f"> [!CAUTION]\n> `{err}`")
    for refusal in check.refused if check is not None else ():
        quoted = refusal.text().replace("\n", "\n> ")
        notes.append(f"> [!CAUTION]\n> `{refusal.model_id}` is refused by the cluster, nothing of it would be "
                     f"written:\n> {quoted}")
    uncataloged = _uncataloged_notes(rows)
    scaled = [(row["model"], row["scaleNote"]) for row in rows if row.get("scaleNote")]
    if scaled:  # what an autoscaler may add to the bill
        notes.append("> [!NOTE]\n" + "\n".join(f"> - `{mid}`: {note}" for mid, note in scaled))
    if uncataloged:  # one alert for all of them: a list, not a box per model
        notes.append("> [!NOTE]\n" + "\n".join(f"> - `{mid}`: {note}" for mid, note in uncataloged))
    if plan.waits:  # requests applied only once another is done (a RAG engine's model, an adapter's tuning run)
        notes.append("> [!NOTE]\n> Waiting for another request:\n" + "\n".join(
            f"> - `{mid}`: {why}" for mid, why in plan.waits))
    for change in plan.changes:
        if change.action == Action.BLOCKED and change.desired is not None:
            notes.append(f"> [!IMPORTANT]\n> `{change.ref}`: {change.reason}")
    if plan.drift_reported:  # one alert for all of them
        notes.append("> [!WARNING]\n> Changed in the cluster, reported and not corrected (drift: report); the next "
                     "change of the model file overwrites it:\n" + "\n".join(
                         f"> - `{c.ref}`: {', '.join(c.fields)}" + (f" (by {', '.join(c.drift_by)})" if c.drift_by else "")
                         for c in plan.drift_reported))
    made = new_nodes(desired, plan)
    if made:
        lines += ["", "#### GPU nodes this change creates", "",
                  "| Model | Mode | Creates | Nodes | SKU | Price / hour |", "|---|---|---|---:|---|---:|"]
        for row in made:
            lines.append(f"| `{row['model']}` | {row['mode']} | {row['what']} | {row['count']} | {_cell(row['sku'])} "
                         f"| {_money(row['pricePerHour'])} |")
    removed_pools = [p for p in plan.node_pools if p.action in ("delete", "blocked")]
    if removed_pools:
        lines += ["", "Agent pools deleted: " + ", ".join(
            f"`{p.pool}` ({p.model_id}, {p.live_count} x {p.vm_size}{', blocked' if p.action == 'blocked' else ''})"
            for p in removed_pools)]
    for note in notes:  # a blank line between alerts, or GitHub renders consecutive ones as one box
        lines += ["", note]
    parts = ["\n".join(lines) + "\n"]
    for change in shown_changes(plan):
        body = object_diff(change, before_label(offline))
        symbol, action = _label(change)
        summary = f"{symbol} <code>{change.ref}</code> — {action}"
        if change.drift_reported:
            summary += " (reported, not corrected)"
        elif change.drift:
            summary += " (drift)"
        parts.append(f"<details><summary>{summary}</summary>\n\n```diff\n{body}```\n</details>\n")
    return parts


def split_comments(parts: Sequence[str], limit: int = COMMENT_LIMIT) -> list[str]:
    """Pack the parts into comments of at most `limit` characters, each with a marker naming its place."""
    budget = limit - len(COMMENT_MARKER.format(i=999, n=999)) - 2
    chunks: list[list[str]] = [[]]
    size = 0
    for part in parts:
        if len(part) > budget:
            cut = budget - 200
            part = part[:cut] + "\n```\n… (truncated: run `gitops-kaito diff` for the full text)\n</details>\n"
        if size + len(part) > budget and chunks[-1]:
            chunks.append([])
            size = 0
        chunks[-1].append(part)
        size += len(part) + 1
    n = len(chunks)
    return [COMMENT_MARKER.format(i=i, n=n) + "\n" + "\n".join(chunk) for i, chunk in enumerate(chunks, 1)]

