"""Pure: per-model reports -> the files under status/ (status/<ns>/<name>.yaml and status/STATUS.md).

Output is deterministic: an unchanged pass renders byte-identical files, so no commit is made (drift left in
place keeps the `since` it was first seen at).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import yaml

from gitops_kaito.core.health import ModelHealth
from gitops_kaito.model.ownership import is_dns_label
from gitops_kaito.model.recent import Recent
from gitops_kaito.model.states import ModelState
from gitops_kaito.repo.yamlsource import SourceError, load_yaml_data

STATUS_MD = "STATUS.md"
HEADER = "# Written by gitops-kaito after each sync pass. Do not edit: the next pass overwrites it.\n"
_S = ModelState
SUMMARY_ORDER: tuple[str, ...] = (_S.READY, _S.SUCCEEDED, _S.RUNNING, _S.PROVISIONING, _S.PENDING, _S.FAILED,
                                  _S.BLOCKED, _S.INVALID, _S.SUSPENDED)
MARKERS: dict[str, str] = {
    _S.READY: "[ok]", _S.SUCCEEDED: "[ok]", _S.RUNNING: "[..]", _S.PROVISIONING: "[..]", _S.PENDING: "[..]",
    _S.FAILED: "[!!]", _S.BLOCKED: "[!!]", _S.INVALID: "[!!]", _S.SUSPENDED: "[--]",
}
MODEL_KIND = "ModelDeployment"  # the request kind a report is of unless it says otherwise


@dataclass(frozen=True)
class EndpointCheck:
    answers: bool | None = None  # None: not checked (the model is not InferenceReady)
    served_model: str | None = None


@dataclass(frozen=True)
class DriftEntry:
    """An object of the model changed in the cluster and left so (`drift: report`): which fields, by whom, since."""

    object: str  # Kind/namespace/name
    fields: tuple[str, ...]
    by: tuple[str, ...] = ()  # field managers that own a drifted field now (kubectl-edit, ...); () = not known
    since: str = ""  # when a pass first saw this object drifted (carried over while it stays drifted)

    @property
    def kind(self) -> str:
        return self.object.split("/", 1)[0]


MAX_DRIFT_FIELDS_SHOWN = 4  # STATUS.md's message cell names this many fields per object; the file has them all


def drift_text(entries: Sequence[DriftEntry]) -> str:
    """"drifted: Workspace resource.count (by kubectl-edit), not corrected: drift: report", for STATUS.md."""
    parts = []
    for e in entries:
        fields = ", ".join(e.fields[:MAX_DRIFT_FIELDS_SHOWN])
        if len(e.fields) > MAX_DRIFT_FIELDS_SHOWN:
            fields += f" and {len(e.fields) - MAX_DRIFT_FIELDS_SHOWN} more"
        parts.append(f"{e.kind} {fields} ({'by ' + ', '.join(e.by) if e.by else 'hand edit'})")
    return f"drifted: {'; '.join(parts)}, not corrected: drift: report" if parts else ""


@dataclass(frozen=True)
class ModelReport:
    model_id: str
    namespace: str
    name: str
    state: str  # a ModelState value, as plain text (it is written to YAML)
    reason: str = ""
    message: str = ""
    sku: str | None = None
    nodes: int | None = None
    gpus: int | None = None
    price_per_hour: float | None = None
    endpoint: str | None = None
    endpoint_check: EndpointCheck = EndpointCheck()
    conditions: tuple[tuple[str, str, str, str], ...] = ()  # (type, status, reason, message)
    node_phases: tuple[tuple[str, str, str], ...] = ()  # (name, phase, reason)
    revision: str = ""
    since: str = ""
    last_error: str | None = None
    source_path: str = ""
    drift: tuple[DriftEntry, ...] = ()  # objects drifted and left in place (drift: report)
    kind: str = MODEL_KIND  # the request's kind: ModelDeployment, TuningJob, RAGDeployment
    output: str | None = None  # a TuningJob: where its adapter goes (image, or volume <claim>)
    llm: str | None = None  # a RAGDeployment: the LLM endpoint it answers with
    replicas: tuple[int, int] | None = None  # an InferenceSet's (ready, desired) replicas; nodes counts them all

    @property
    def status_path(self) -> str:
        """Path relative to the status folder."""
        return f"{self.namespace}/{self.name}.yaml"


def report_from_health(namespace: str, name: str, health: ModelHealth, *, model_id: str | None = None,
                       sku: str | None = None, nodes: int | None = None, gpus: int | None = None,
                       price_per_hour: float | None = None, revision: str = "", source_path: str = "",
                       last_error: str | None = None,
                       endpoint_check: EndpointCheck = EndpointCheck(),
                       drift: Sequence[DriftEntry] = (), kind: str = MODEL_KIND, output: str | None = None,
                       llm: str | None = None) -> ModelReport:
    return ModelReport(
        model_id=model_id or f"{namespace}.{name}", namespace=namespace, name=name, state=str(health.state),
        reason=health.reason, message=health.message, sku=sku, nodes=nodes, gpus=gpus,
        price_per_hour=price_per_hour, endpoint=health.endpoint, endpoint_check=endpoint_check,
        conditions=tuple((c.type, c.status, c.reason, c.message) for c in health.conditions),
        node_phases=tuple((n.name, n.phase, n.reason) for n in health.nodes),
        revision=revision, last_error=last_error, source_path=source_path,
        drift=tuple(drift), kind=kind, output=output, llm=llm, replicas=health.replicas,
    )


# -- secrets --------------------------------------------------------------------------------------
_SECRET_PATTERNS = (
    # Well-known token shapes (Hugging Face, GitHub, GitLab, Slack, OpenAI-style, Azure SAS signatures).
    re.compile(r"\b(?:hf_|ghp_|gho_|ghs_|ghu_|ghr_|github_pat_|glpat-|xox[abpr]-|sk-)[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"),  # JWT
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9+/=._\-]{8,}"),
    re.compile(r"(?i)\b([A-Za-z0-9_\-]*(?:token|password|passwd|secret|api[_-]?key|access[_-]?key|sig))"
               r"(\"?\s*[=:]\s*\"?)[^\s\"'&,;]+"),
    re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"),  # user:password in a URL of any scheme
    re.compile(r"(?i)\b(https?://)[^/\s:@]+@"),  # https://<token>@host
    re.compile(r"\b([A-Za-z0-9._-]+)(:)[^/\s@:]+(?=@[A-Za-z0-9.-]+:)"),  # scp-like user:password@host:path
)
# Long opaque strings mixing letters and digits (keys); pure hex is left alone (commit shas, digests).
_OPAQUE = re.compile(r"\b(?=[A-Za-z0-9+/_\-]*[A-Z])(?=[A-Za-z0-9+/_\-]*[a-z])(?=[A-Za-z0-9+/_\-]*\d)"
                     r"[A-Za-z0-9+/_\-]{32,}={0,2}")


def scrub(text: str | None) -> str:
    """Replace anything that looks like a credential with ***; secret NAMES stay readable."""
    if not text:
        return ""
    out = text
    for pattern in _SECRET_PATTERNS:
        def keep_prefix(m: re.Match[str]) -> str:
            groups = [g for g in m.groups() if g is not None]
            if len(groups) >= 2:
                return f"{groups[0]}{groups[1]}***"
            if len(groups) == 1:
                return f"{groups[0]}***@" if groups[0].endswith("://") else f"{groups[0]} ***"
            return "***"
        out = pattern.sub(keep_prefix, out)
    return _OPAQUE.sub("***", out)


def scrubbed(report: ModelReport) -> ModelReport:
    return replace(
        report, reason=scrub(report.reason), message=scrub(report.message),
        last_error=scrub(report.last_error) or None,
        conditions=tuple((t, s, scrub(r), scrub(m)) for t, s, r, m in report.conditions),
        node_phases=tuple((n, p, scrub(r)) for n, p, r in report.node_phases),
    )


# -- since ----------------------------------------------------------------------------------------
class StatusMemo:
    """What the long-running loop's last status render computed, per status file: the previous file parsed (by its
    text) and each final report's YAML. A pass in which a few models changed parses and renders only those again: at
    5,000 models parsing and rendering every file took ~20 s (PyYAML's emitter is pure Python), and the daemon's next
    pass waited for it. Keeps only what the last render used."""

    def __init__(self) -> None:
        self._parsed: Recent[str, tuple[str, ModelReport | None]] = Recent()
        self._texts: Recent[ModelReport, str] = Recent()
        self._scrubbed: Recent[ModelReport, ModelReport] = Recent()

    def scrubbed(self, report: ModelReport) -> ModelReport:
        found = self._scrubbed.get(report)
        if found is None:
            found = scrubbed(report)
            self._scrubbed.put(report, found)
        return found

    def parse(self, path: str, text: str | None) -> ModelReport | None:
        if not text:
            return None
        held = self._parsed.get(path)
        if held is not None and held[0] == text:
            return held[1]
        found = _safe_parse(text)
        self._parsed.put(path, (text, found))
        return found

    def render(self, report: ModelReport) -> str:
        text = self._texts.get(report)
        if text is None:
            text = render_model_yaml(report)
            self._texts.put(report, text)
        # What this pass writes is the next pass's previous file: known without parsing it (carry_since reads only
        # state, since, revision and drift from it, all plain strings that come back from YAML as they went in).
        self._parsed.put(report.status_path, (text, report))
        return text

    def rotate(self) -> None:
        for memo in (self._parsed, self._texts, self._scrubbed):
            memo.rotate()


def carry_since(reports: Iterable[ModelReport], previous: Mapping[str, str], now: str,
                keep_revision: Collection[str] = (), memo: StatusMemo | None = None) -> tuple[ModelReport, ...]:
    """Keep each model's `since` from its previous status file while its state is unchanged, and for the
    models in `keep_revision` the revision that file names (when it names one): one parse per file for both.
    Each drifted object keeps the `since` it was first seen drifted at while it stays drifted."""
    out = []
    for r in reports:
        prev = memo.parse(r.status_path, previous.get(r.status_path)) if memo is not None else _safe_parse(
            previous.get(r.status_path))
        since = prev.since if prev is not None and prev.state == r.state and prev.since else now
        revision = prev.revision if prev is not None and prev.revision and r.model_id in keep_revision else r.revision
        drifted_since = {e.object: e.since for e in prev.drift if e.since} if prev is not None else {}
        drift = tuple(replace(e, since=e.since or drifted_since.get(e.object) or now)
                      for e in sorted(r.drift, key=lambda e: e.object))  # in a stable order: no needless commit
        out.append(replace(r, since=since, revision=revision, drift=drift))
    return tuple(out)


def _safe_parse(text: str | None) -> ModelReport | None:
    if not text:
        return None
    try:
        return parse_model_yaml(text)
    except ValueError:  # a hand-edited or foreign file: this pass writes it anew
        return None


# -- rendering ------------------------------------------------------------------------------------
def render_files(reports: Iterable[ModelReport], previous: Mapping[str, str], now: str,
                 keep_revision: Collection[str] = (), problems: Sequence[str] = (),
                 memo: StatusMemo | None = None) -> dict[str, str]:
    """All files of the status folder, keyed by path relative to it. Files not listed should not exist.

    `keep_revision`: model ids whose previous status file's revision stays (see carry_since). `problems`: what
    held the pass back beyond single models (a broken gitops-kaito.yaml or template, the prune guard), for STATUS.md.
    `memo`: the long-running loop's StatusMemo, kept across passes (None: every file parsed and rendered).
    """
    memo = memo or StatusMemo()
    final = sorted(carry_since((memo.scrubbed(r) for r in reports), previous, now, keep_revision, memo),
                   key=lambda r: r.model_id)
    files = {r.status_path: memo.render(r) for r in final}
    memo.rotate()
    files[STATUS_MD] = render_status_md(final, [scrub(p) for p in problems])
    return files


def other_instances_files(previous: Mapping[str, str]) -> dict[str, str]:
    """The files under the status root that named instances keep in their own <instance>/ folders.

    The default instance writes STATUS.md and <namespace>/<name>.yaml at the root; anything else there
    (<instance>/STATUS.md, <instance>/<namespace>/<name>.yaml) belongs to another instance and is carried over
    untouched when the root is rewritten.
    """
    return {rel: text for rel, text in previous.items()
            if rel != STATUS_MD and not (rel.count("/") == 1 and rel.endswith(".yaml"))}


def model_document(report: ModelReport) -> dict[str, Any]:
    r = report
    return {
        "model": f"{r.namespace}/{r.name}",
        "state": r.state,
        "reason": r.reason,
        "message": r.message,
        "since": r.since,
        "revision": r.revision,
        "source": r.source_path,
        "sku": r.sku,
        "nodes": r.nodes,
        "gpus": r.gpus,
        "pricePerHour": r.price_per_hour,
        "endpoint": r.endpoint,
        "endpointCheck": {"answers": r.endpoint_check.answers, "servedModel": r.endpoint_check.served_model},
        "conditions": [{"type": t, "status": s, "reason": rs, "message": m} for t, s, rs, m in r.conditions],
        "nodePhases": [{"name": n, "phase": p, "reason": rs} for n, p, rs in r.node_phases],
        "lastError": r.last_error,
        # Only when there is some: a status file without drift stays byte-identical to one written before drift
        # was reported at all (no commit rewriting every file).
        **({"drift": [{"object": e.object, "fields": list(e.fields), "by": list(e.by), "since": e.since}
                      for e in r.drift]} if r.drift else {}),
        # Other kinds only, so a model's file stays as it was.
        **({"kind": r.kind} if r.kind != MODEL_KIND else {}),
        **({"output": r.output} if r.output else {}),
        **({"llm": r.llm} if r.llm else {}),
        # Only for a model served by an InferenceSet: other status files stay as they were.
        **({"replicas": {"ready": r.replicas[0], "desired": r.replicas[1]}} if r.replicas is not None else {}),
    }


def render_model_yaml(report: ModelReport) -> str:
    return HEADER + yaml.safe_dump(model_document(report), sort_keys=False, allow_unicode=True, width=1000)


def parse_model_yaml(text: str, shown: str = "status file") -> ModelReport:
    """Inverse of render_model_yaml (for `gitops-kaito status` and `since` carry-over); ValueError when not one.

    Anyone with push access can write these files, so they are read under the model files' limits (size, no aliases,
    depth, finite numbers) and every field is type-checked: a wrong shape is a ValueError, never another exception.
    """
    try:
        doc = load_yaml_data(text, shown, STATUS_FILE_MAX_BYTES)
    except SourceError as err:  # a hand-edited or truncated file: callers skip it with a warning
        raise ValueError(f"not a gitops-kaito status file: {err.message}") from None
    model = doc.get("model")
    ns, _, name = model.partition("/") if isinstance(model, str) else ("", "", "")
    if not is_dns_label(ns) or not is_dns_label(name):
        raise ValueError("not a gitops-kaito status file: model must be NAMESPACE/NAME")
    check = _mapping(doc.get("endpointCheck"))
    answers = check.get("answers")
    if answers is not None and not isinstance(answers, bool):
        raise ValueError("not a gitops-kaito status file: endpointCheck.answers must be true or false")
    return ModelReport(
        model_id=f"{ns}.{name}", namespace=ns, name=name, state=_text(doc.get("state")),
        reason=_text(doc.get("reason")), message=_text(doc.get("message")),
        sku=_text(doc.get("sku")) or None, nodes=_count(doc.get("nodes")), gpus=_count(doc.get("gpus")),
        price_per_hour=_number(doc.get("pricePerHour")), endpoint=_text(doc.get("endpoint")) or None,
        endpoint_check=EndpointCheck(answers,
                                     _text(check.get("servedModel")) or None),
        conditions=tuple((_text(c.get("type")), _text(c.get("status")), _text(c.get("reason")),
                          _text(c.get("message"))) for c in _mappings(doc.get("conditions"))),
        node_phases=tuple((_text(n.get("name")), _text(n.get("phase")), _text(n.get("reason")))
                          for n in _mappings(doc.get("nodePhases"))),
        revision=_text(doc.get("revision")), since=_text(doc.get("since")),
        last_error=_text(doc.get("lastError")) or None, source_path=_text(doc.get("source")),
        drift=tuple(DriftEntry(_text(d.get("object")), _texts(d.get("fields")), _texts(d.get("by")),
                               _text(d.get("since"))) for d in _mappings(doc.get("drift"))),
        kind=_text(doc.get("kind")) or MODEL_KIND, output=_text(doc.get("output")) or None,
        llm=_text(doc.get("llm")) or None,
        replicas=_replicas_of(doc.get("replicas")),
    )


def _replicas_of(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, dict):
        return None
    ready, desired = value.get("ready"), value.get("desired")
    return (ready, desired) if isinstance(ready, int) and isinstance(desired, int) else None


# What one model's status file may weigh: far above a real one (a few KiB), far below what would hurt to read.
STATUS_FILE_MAX_BYTES = 256 * 1024


def _text(value: Any) -> str:
    """A scalar as text ('' for null); a list or mapping where a scalar belongs is not a status file."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise ValueError("not a gitops-kaito status file: a list or mapping where a value belongs")
    return str(value)


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(_text(v) for v in _list(value))


def _count(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError(f"not a gitops-kaito status file: {value!r} where a count belongs")


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a gitops-kaito status file: {value!r} where a price belongs")


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("not a gitops-kaito status file: a value where a list belongs")
    return value


def _mapping(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("not a gitops-kaito status file: a value where a mapping belongs")
    return value


def _mappings(value: Any) -> list[dict[str, Any]]:
    return [_mapping(v) for v in _list(value)]


def summary_line(reports: Sequence[ModelReport]) -> str:
    """"3 models: 2 Ready, 1 Provisioning"."""
    counts = Counter(r.state for r in reports)
    order = [s for s in SUMMARY_ORDER if counts.get(s)] + sorted(s for s in counts if s not in SUMMARY_ORDER)
    noun = "model" if len(reports) == 1 else "models"
    if not reports:
        return "0 models"
    return f"{len(reports)} {noun}: " + ", ".join(f"{counts[s]} {s}" for s in order)


def price_cell(report: ModelReport) -> str:
    return f"${report.price_per_hour:,.2f}/h" if report.price_per_hour is not None else ""


@dataclass(frozen=True)
class GpuCost:
    """The GPU nodes the models hold and what they cost per hour at the prices the plan used."""

    nodes: int
    usd_per_hour: float
    unpriced_models: int  # models on nodes without a known price (bring-your-own nodes)


def gpu_cost(reports: Sequence[ModelReport]) -> GpuCost | None:
    """None when no model holds nodes; Invalid and Suspended models hold none."""
    holding = [r for r in reports if r.state not in (ModelState.INVALID, ModelState.SUSPENDED) and r.nodes]
    if not holding:
        return None
    priced = [r for r in holding if r.price_per_hour is not None]
    return GpuCost(sum(r.nodes or 0 for r in priced), round(sum(r.price_per_hour or 0.0 for r in priced), 6),
                   len(holding) - len(priced))


def cost_line(reports: Sequence[ModelReport]) -> str:
    """"GPU nodes: 3 at $8.81 per hour (...)", or "" when no model holds nodes."""
    cost = gpu_cost(reports)
    if cost is None:
        return ""
    line = f"GPU nodes: {cost.nodes} at ${cost.usd_per_hour:,.2f} per hour (catalog prices, or prices: in gitops-kaito.yaml)"
    if cost.unpriced_models:
        line += f"; {cost.unpriced_models} model{'s' if cost.unpriced_models > 1 else ''} on nodes without a known price"
    return line


def short_revision(revision: str) -> str:
    ref, sep, sha = revision.rpartition("sha1:")
    return f"{ref}{sep}{sha[:12]}" if sep else revision


def sku_cell(report: ModelReport) -> str:
    if report.replicas is not None:  # an InferenceSet: its nodes are all its replicas'
        ready, desired = report.replicas
        what = f"{report.sku} x {report.nodes}" if report.sku and report.nodes else (report.sku or "")
        return f"{what}, {ready}/{desired} replicas ready".lstrip(", ")
    if report.sku and report.nodes:
        return f"{report.sku} x {report.nodes}"
    return report.sku or (f"x {report.nodes}" if report.nodes else "")


def _md(text: str | None) -> str:
    if not text:
        return "-"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip() or "-"


def message_cell(report: ModelReport) -> str:
    """The Message column: what holds the model up (a Ready one: its last error), then drift left in place. The
    state stays what health says: a drifted model can be Ready."""
    message = report.message if report.state not in ("Ready", "Succeeded") else (report.last_error or "")
    return "; ".join(m for m in (message, drift_text(report.drift)) if m)


MAX_PROBLEMS_SHOWN = 20


def render_status_md(reports: Sequence[ModelReport], problems: Sequence[str] = ()) -> str:
    ordered = sorted(reports, key=lambda r: r.model_id)
    lines = [
        "# Model status",
        "",
        "<!-- Written by gitops-kaito after each sync pass. Do not edit: the next pass overwrites it. -->",
        "",
        summary_line(ordered),
        "",
    ]
    if cost := cost_line(ordered):
        lines += [cost, ""]
    if problems:
        # The answer to "why isn't it syncing?" when the cause is not one model's file: shown where people look.
        lines += ["**Problems in the last pass** (they hold back more than one model; models with their own "
                  "problem say so in their row):", ""]
        lines += [f"- {_md(p)}" for p in problems[:MAX_PROBLEMS_SHOWN]]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"- ... and {len(problems) - MAX_PROBLEMS_SHOWN} more (`gitops-kaito validate` lists them)")
        lines.append("")
    if ordered:
        lines += ["| Model | State | SKU x nodes | Per hour | Endpoint | Revision | Since | Message |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in ordered:
            endpoint = r.endpoint or ""
            if endpoint and r.endpoint_check.answers is not None:
                served = f" ({r.endpoint_check.served_model})" if r.endpoint_check.served_model else ""
                endpoint += " answers" + served if r.endpoint_check.answers else " not answering"
            if r.output:
                endpoint = f"output: {r.output}"
            if r.llm:
                endpoint = f"{endpoint}; LLM {r.llm}" if endpoint else f"LLM {r.llm}"
            name = f"{r.namespace}/{r.name}" + (f" ({r.kind})" if r.kind != MODEL_KIND else "")
            cells = [name, f"{MARKERS.get(r.state, '[??]')} {r.state}", sku_cell(r),
                     price_cell(r), endpoint,
                     short_revision(r.revision), r.since, message_cell(r)]
            lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
