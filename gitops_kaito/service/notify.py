"""Notifications on model state changes: pure event decisions from one pass's reports to the next, and a thin
sender (a background thread, a bounded queue, retries with backoff) to a generic-HMAC, Slack or Teams webhook.

Events: `deployed` (Ready at a revision not announced yet), `failed` (Failed/Blocked/Invalid, once per reason),
`degraded` (left Ready), `removed` (pruned). The first pass after start (or after regaining leadership) only seeds.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gitops_kaito.core.status import ModelReport, scrub, scrubbed, short_revision
from gitops_kaito.model.states import TROUBLE, ModelState
from gitops_kaito.model.states import Outcome as PassOutcome
from gitops_kaito.service.webhooks import GENERIC_SIGNATURE_HEADER, sign

if TYPE_CHECKING:  # only the shape: the pure part never runs a pass
    from gitops_kaito.reconcile.gitsync import GitPassResult
    from gitops_kaito.reconcile.sync import PassResult

log = logging.getLogger(__name__)

DEPLOYED = "deployed"
FAILED_EVENT = "failed"
DEGRADED = "degraded"
RECOVERED = "recovered"
REMOVED = "removed"
EVENTS = (DEPLOYED, FAILED_EVENT, DEGRADED, RECOVERED, REMOVED)

# Invalid and Blocked carry a constant reason code; what tells one of their failures from another is the message.
_MESSAGE_IS_REASON = frozenset({ModelState.BLOCKED, ModelState.INVALID})

BATCH_OVER = 10  # more events than this in one pass go out as one request per sink
_TEXT_LINES = 20  # event lines in one Slack/Teams batch message; the rest are counted
_TEXT_MESSAGE_CHARS = 300


# -- pure: what happened -------------------------------------------------------------------------
@dataclass(frozen=True)
class Tracked:
    """What the notifier remembers of one model between passes."""

    state: str
    revision: str  # the revision last applied to this model (a pass that wrote its desired state), else first seen
    deployed: str = ""  # the revision last announced (or seeded) as deployed
    failure: str = ""  # the failure last announced ("<state>: <reason>"); cleared when the model is Ready again


@dataclass(frozen=True)
class Event:
    event: str  # deployed | failed | degraded | recovered | removed
    model_id: str
    namespace: str
    name: str
    state: str | None  # None for removed
    previous_state: str | None  # None when the model was not known before
    revision: str
    reason: str = ""
    message: str = ""
    sku: str | None = None
    nodes: int | None = None
    price_per_hour: float | None = None
    endpoint: str | None = None

    @property
    def model(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Decision:
    events: tuple[Event, ...]
    tracked: Mapping[str, Tracked] = field(repr=False)


def failure_key(report: ModelReport) -> str:
    why = report.message if report.state in _MESSAGE_IS_REASON else report.reason
    return f"{report.state}: {why or report.message}"


def seed(reports: Iterable[ModelReport], written: Collection[str] = ()) -> dict[str, Tracked]:
    """What a first pass records without announcing anything: every model's current state is taken as known.

    A model this pass wrote is not taken as deployed even when it reads Ready: its new revision is announced
    once a later pass finds it Ready and settled.
    """
    out = {}
    for r in reports:
        deployed = r.revision if r.state in DONE and r.model_id not in written else ""
        failure = failure_key(r) if r.state in TROUBLE else ""
        out[r.model_id] = Tracked(r.state, r.revision, deployed, failure)
    return out


# A model Ready, or a tuning run Succeeded: what `deployed` announces and `degraded` is the loss of.
DONE = frozenset({ModelState.READY, ModelState.SUCCEEDED})


def decide(previous: Mapping[str, Tracked] | None, reports: Sequence[ModelReport], *,
           written: Collection[str] = (), pruned: Collection[str] = (), revision: str = "") -> Decision:
    """The events of one pass, and what to remember for the next.

    `previous`: None on the first pass (seed only). `written`: the models whose desired state this pass wrote
    (drift corrections excluded): their revision becomes the pass's, and they are not announced as deployed until
    a pass that writes nothing to them finds them Ready. `pruned`: the models whose objects this pass deleted.
    `revision`: the pass's revision (what a removal is announced at). At most one event per model per pass.
    """
    if previous is None:
        return Decision((), seed(reports, written))
    tracked: dict[str, Tracked] = {}
    events: list[Event] = []
    for r in reports:
        before = previous.get(r.model_id)
        rev = r.revision if before is None or r.model_id in written else before.revision
        now = Tracked(r.state, rev, before.deployed if before else "", before.failure if before else "")
        was = before.state if before else None
        kind = ""
        if r.state in DONE:
            now = replace(now, failure="")
            if r.model_id not in written and rev != now.deployed:
                kind, now = DEPLOYED, replace(now, deployed=rev)
            elif was is not None and was not in DONE and rev == now.deployed:
                kind = RECOVERED  # back to Ready at the revision already announced: the "all clear" after a page
        elif r.state in TROUBLE:
            key = failure_key(r)
            if key != now.failure:
                kind, now = FAILED_EVENT, replace(now, failure=key)
        elif was in DONE:
            kind = DEGRADED
        if kind:
            # A failure names the revision that could not be applied; the others the one the model runs (or ran).
            events.append(_event(kind, r, was, r.revision if kind == FAILED_EVENT else rev))
        tracked[r.model_id] = now
    reported = {r.model_id for r in reports}
    for mid, before in previous.items():
        if mid in reported:
            continue
        if mid in pruned:
            ns, _, name = mid.partition(".")
            events.append(Event(REMOVED, mid, ns, name, None, before.state, revision or before.revision))
        else:
            # Missing without a prune (a broken gitops-kaito.yaml, a pass that read no models): remembered as it
            # was, so the model's return is not taken for news.
            tracked[mid] = before
    return Decision(tuple(sorted(events, key=lambda e: (e.model_id, e.event))), tracked)


def _event(kind: str, report: ModelReport, was: str | None, revision: str) -> Event:
    r = scrubbed(report)  # messages come from API errors and controllers: never send a credential out
    return Event(kind, r.model_id, r.namespace, r.name, r.state, was, revision, r.reason, r.message, r.sku,
                 r.nodes, r.price_per_hour, r.endpoint)


def written_models(result: PassResult) -> set[str]:
    """The models whose desired state this pass wrote: any create/update/replace/delete that is not a drift fix."""
    return {c.model_id for c in result.plan.changes if c.writes and not c.drift}


def pruned_models(result: PassResult) -> set[str]:
    return {o.model_id for o in result.outcomes if o.state == PassOutcome.PRUNED}


# -- pure: what goes on the wire -----------------------------------------------------------------
@dataclass(frozen=True)
class Sink:
    """One webhook: where, in which payload shape, and the HMAC secret of a generic one."""

    url: str = field(repr=False)  # a secret (a Slack or Teams URL is its own credential)
    format: str = "generic"
    secret: bytes | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.format

    @property
    def where(self) -> str:
        return redact_url(self.url)


@dataclass(frozen=True)
class Origin:
    """Which daemon speaks: the cluster's name (if given) and the gitops-kaito instance; when."""

    cluster: str = ""
    instance: str = "default"
    timestamp: str = ""

    @property
    def label(self) -> str:
        return f"{self.cluster}/{self.instance}" if self.cluster else self.instance


@dataclass(frozen=True)
class Request:
    """One HTTP POST to a sink, carrying `events` notifications."""

    sink: Sink
    body: bytes
    headers: tuple[tuple[str, str], ...] = field(repr=False)  # may carry a credential (a commit status token)
    events: int = 1


def redact_url(url: str) -> str:
    """scheme://host[:port]: what a log may show of a webhook URL (its path and query are the secret)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: what is logged must never raise (nor show more)
        port = ""
    return f"{parts.scheme or '?'}://{host}{port}"


def _hide_url(text: str, url: str) -> str:
    """`text` with the URL, and its path and query on their own (http.client quotes those alone), cut out."""
    parts = urlsplit(url)
    out = text.replace(url, redact_url(url))
    secret = parts.path + (f"?{parts.query}" if parts.query else "")
    for piece in (secret, parts.path, parts.query):
        if piece and piece != "/":
            out = out.replace(piece, "/***")
    return out


def event_document(event: Event, origin: Origin) -> dict[str, Any]:
    return {
        "event": event.event,
        "model": event.model,
        "namespace": event.namespace,
        "name": event.name,
        "state": event.state,
        "previousState": event.previous_state,
        "revision": event.revision,
        "reason": event.reason,
        "message": event.message,
        "sku": event.sku,
        "nodes": event.nodes,
        "pricePerHour": event.price_per_hour,
        "endpoint": event.endpoint,
        "cluster": origin.cluster,
        "instance": origin.instance,
        "timestamp": origin.timestamp,
    }


def event_text(event: Event) -> str:
    """One line for people: what happened to which model, at which revision, on what."""
    rev = short_revision(event.revision)
    if event.event == DEPLOYED:
        details = [d for d in (_sku(event), f"${event.price_per_hour:,.2f}/h"
                                if event.price_per_hour is not None else "") if d]
        text = f"✅ {event.model} is Ready at {rev}" + (f" ({', '.join(details)})" if details else "")
    elif event.event == FAILED_EVENT:
        was = f" (was {event.previous_state})" if event.previous_state else ""
        text = f"❌ {event.model} is {event.state}{was} at {rev}: {_why(event)}"
    elif event.event == RECOVERED:
        text = f"✅ {event.model} is Ready again at {rev} (was {event.previous_state})"
    elif event.event == DEGRADED:
        text = f"⚠️ {event.model} left Ready: now {event.state} at {rev}" + (f": {event.message}" if event.message
                                                                             else "")
    else:
        text = f"🗑️ {event.model} was removed (pruned at {rev}; it was {event.previous_state})"
    return text if len(text) <= _TEXT_MESSAGE_CHARS else text[:_TEXT_MESSAGE_CHARS - 1] + "…"


def _sku(event: Event) -> str:
    if event.sku and event.nodes:
        return f"{event.sku} x {event.nodes}"
    return event.sku or ""


def _why(event: Event) -> str:
    if event.reason and event.message and event.reason not in ("Blocked", "InvalidRequest"):
        return f"{event.reason}: {event.message}"
    return event.message or event.reason or "no reason given"


def batch_text(events: Sequence[Event], origin: Origin, line_break: str = "\n") -> str:
    counts = Counter(e.event for e in events)
    head = f"gitops-kaito {origin.label}: " + ", ".join(f"{counts[k]} {k}" for k in EVENTS if counts.get(k))
    if len(events) == 1:
        head = f"gitops-kaito {origin.label}:"
    lines = [head, *(event_text(e) for e in events[:_TEXT_LINES])]
    if len(events) > _TEXT_LINES:
        lines.append(f"… and {len(events) - _TEXT_LINES} more")
    return line_break.join(lines)


def slack_escape(text: str) -> str:
    """Slack's three control characters, escaped as its docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def requests_for(sink: Sink, events: Sequence[Event], origin: Origin, batch_over: int = BATCH_OVER) -> list[Request]:
    """The HTTP requests that carry one pass's events to one sink: one per event, or one for all when many."""
    if not events:
        return []
    groups = [list(events)] if len(events) > batch_over else [[e] for e in events]
    return [_request(sink, group, origin) for group in groups]


def _request(sink: Sink, events: Sequence[Event], origin: Origin) -> Request:
    payload: dict[str, Any]
    if sink.format == "slack":
        # Slack reads <...> as links and mentions (<!channel>): a controller's message must not ping a channel.
        payload = {"text": slack_escape(batch_text(events, origin))}
    elif sink.format == "teams":
        # The MessageCard form Teams incoming webhooks take; Teams' markdown needs a blank line between lines.
        text = batch_text(events, origin, "\n\n")
        payload = {"@type": "MessageCard", "@context": "https://schema.org/extensions",
                   "summary": text.split("\n\n", 1)[0], "text": text}
    elif len(events) == 1:
        payload = event_document(events[0], origin)
    else:
        payload = {"event": "batch", "count": len(events), "cluster": origin.cluster, "instance": origin.instance,
                   "timestamp": origin.timestamp, "events": [event_document(e, origin) for e in events]}
    body = json.dumps(payload, ensure_ascii=False, sort_keys=False).encode()
    headers = [("Content-Type", "application/json; charset=utf-8"), ("User-Agent", "gitops-kaito")]
    if sink.format == "generic" and sink.secret:
        headers.append((GENERIC_SIGNATURE_HEADER, sign(sink.secret, body)))  # what /hooks/generic verifies
    return Request(sink, body, tuple(headers), len(events))


# -- delivery -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """What one POST got: an HTTP status (0 when none came back), Retry-After as given, a short reason."""

    status: int
    retry_after: str | None = None
    detail: str = ""
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # of an error answer, names lower-case

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)


Post = Callable[[Request, float], Answer]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirected webhook would resend the body (and its signature) somewhere nobody configured.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http_post(request: Request, timeout_s: float) -> Answer:
    req = urllib.request.Request(request.sink.url, data=request.body, method="POST", headers=dict(request.headers))
    try:
        with _OPENER.open(req, timeout=timeout_s) as resp:
            return Answer(int(resp.status))
    except urllib.error.HTTPError as err:
        try:
            text = err.read(200).decode("utf-8", "replace")
        except OSError:
            text = ""
        return Answer(int(err.code), err.headers.get("Retry-After") if err.headers else None,
                      f"HTTP {err.code}" + (f": {scrub(text.strip())}" if text.strip() else ""),
                      tuple((k.lower(), v) for k, v in err.headers.items()) if err.headers else ())
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:  # no (readable) answer
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        return Answer(0, None, _hide_url(f"{type(reason).__name__}: {reason}", request.sink.url))


@dataclass(frozen=True)
class SendRetry:
    attempts: int = 4  # the first try and three retries
    timeout_s: float = 10.0  # per request
    backoff_s: float = 1.0  # doubled after each failure
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0  # a Retry-After longer than this is cut to it


def retryable(status: int) -> bool:
    """No answer, a 5xx or 429: try again. Any other 4xx (or 3xx) would only fail the same way."""
    return status == 0 or status == 429 or status >= 500


def retry_delay(answer: Answer, attempt: int, policy: SendRetry, now: float) -> float:
    """Seconds before the next attempt: the server's Retry-After (seconds or an HTTP date) when it gives one,
    capped; else exponential backoff."""
    backoff = min(policy.backoff_s * 2 ** (attempt - 1), policy.max_backoff_s)
    given = (answer.retry_after or "").strip()
    if not given:
        return backoff
    try:
        seconds = float(given)
        if math.isnan(seconds):  # float() takes "nan"; a wait of nan returns at once
            return backoff
    except ValueError:
        try:
            seconds = parsedate_to_datetime(given).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return backoff
    return min(max(seconds, 0.0), policy.max_retry_after_s)


@dataclass(frozen=True)
class Verdict:
    """What an answer means to the sender: the result the outcome callback is told, whether that result counts as
    delivered (else it is logged as a failure), and whether another attempt may do better."""

    result: str
    ok: bool
    retry: bool = False


def notification_verdict(answer: Answer) -> Verdict:
    if 200 <= answer.status < 300:
        return Verdict("sent", True)
    return Verdict("failed", False, retryable(answer.status))


def notification_failure(request: Request, answer: Answer, attempts: int) -> str:
    """The log line of a notification given up on: the URL cut to scheme://host, never its secret path."""
    return (f"notification to {request.sink.where} ({request.sink.name}, {request.events} "
            f"event{'' if request.events == 1 else 's'}) failed after {attempts} attempt{'' if attempts == 1 else 's'}"
            f": {answer.detail or f'HTTP {answer.status}'}")


Outcome = Callable[[Request, str], None]  # (request, "sent" | "failed" | "dropped" | a Verdict's result)


class Sender:
    """Delivers requests on one background thread, in order, from a bounded queue: a pass only enqueues.

    `post`, `sleep` and `clock` are injectable (tests run the retries without waiting). The default sleep is a
    wait on the stop flag, so stop() interrupts a backoff. Notifications are the default; another kind of request
    (commit statuses, service/commitstatus.py) brings its own `verdict` of an answer, `on_answer` (told every
    answer, retries included), `describe` (the line logged when one is given up), `noun` and thread name.
    """

    def __init__(self, outcome: Outcome, *, policy: SendRetry | None = None, queue_size: int = 100,
                 post: Post = http_post, sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 verdict: Callable[[Answer], Verdict] = notification_verdict,
                 on_answer: Callable[[Request, Answer], None] | None = None,
                 describe: Callable[[Request, Answer, int], str] = notification_failure,
                 noun: str = "notification", thread_name: str = "notify-sender") -> None:
        self.outcome = outcome
        self.verdict = verdict
        self.on_answer = on_answer
        self.describe = describe
        self.noun = noun
        self.thread_name = thread_name
        self.policy = policy or SendRetry()
        self.queue_size = queue_size
        self.post = post
        self._stop = threading.Event()
        self.sleep = sleep or self._stop.wait
        self.clock = clock
        self._queue: deque[Request] = deque()
        self._busy = 0  # requests taken off the queue and not finished
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, requests: Iterable[Request]) -> None:
        """Queue requests (never blocks); those that do not fit are dropped and counted."""
        dropped: list[Request] = []
        with self._cond:
            for request in requests:
                if self._stop.is_set() or len(self._queue) >= self.queue_size:
                    dropped.append(request)
                else:
                    self._queue.append(request)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        for request in dropped:
            log.warning("%s to %s dropped: the send queue is full (%d) or stopping", self.noun, request.sink.where,
                        self.queue_size)
            self.outcome(request, "dropped")

    def wait_idle(self, timeout_s: float) -> bool:
        """True once everything queued has been sent or given up (for tests and a clean stop)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout=timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Give queued requests up to timeout_s, then stop (a backoff in progress ends at once)."""
        if not self.wait_idle(timeout_s):
            log.warning("stopping with %ss still queued; they are dropped", self.noun)
        with self._cond:
            self._stop.set()
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for request in left:
            self.outcome(request, "dropped")
        if self._thread is not None:
            self._thread.join(timeout=1.0)  # a request in flight ends within its own timeout; the thread is a daemon

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stop.is_set())
                if self._stop.is_set():
                    return
                request = self._queue.popleft()
                self._busy += 1
            result = "failed"
            try:
                result = self.deliver(request)
            except Exception:  # a sender bug must not end the thread: the next pass's events still go out
                log.exception("%s to %s crashed", self.noun, request.sink.where)
            finally:
                self.outcome(request, result)
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def deliver(self, request: Request) -> str:
        """One request with its retries: the verdict's result ("sent" or "failed" for notifications); a failure is
        logged by `describe` (notifications: the URL cut to scheme://host)."""
        answer, verdict, attempt = Answer(0), Verdict("failed", False), 0
        for attempt in range(1, self.policy.attempts + 1):
            answer = self.post(request, self.policy.timeout_s)
            if self.on_answer is not None:
                self.on_answer(request, answer)
            verdict = self.verdict(answer)
            if verdict.ok or not verdict.retry or attempt == self.policy.attempts or self._stop.is_set():
                break
            self.sleep(retry_delay(answer, attempt, self.policy, self.clock()))
        if not verdict.ok:
            log.warning("%s", self.describe(request, answer, attempt))
        return verdict.result


# -- the daemon's side ----------------------------------------------------------------------------
class LeaderTerms:
    """What reports after each pass (notifications, commit statuses, service/commitstatus.py) remembers per
    leadership term: forget() (leadership lost: another replica reports meanwhile) drops it and starts the next
    term; a pass hands back the term it started in, and one that outlived a forget() reports nothing."""

    def __init__(self) -> None:
        self._generation = 0  # one per leadership term here: forget() starts the next
        self._lock = threading.Lock()  # guards the term and what the subclass remembers

    @property
    def generation(self) -> int:
        """Taken when a pass starts and handed to observe(): a pass that outlived a forget() is ignored."""
        with self._lock:
            return self._generation

    def forget(self) -> None:
        with self._lock:
            self._drop_memory()
            self._generation += 1

    def _drop_memory(self) -> None:
        """Called with the lock held: leading again, this replica compares afresh."""
        raise NotImplementedError

    def _outlived(self, generation: int | None) -> bool:
        """Called with the lock held: the pass started in an earlier term (None: not checked)."""
        return generation is not None and generation != self._generation


class Notifier(LeaderTerms):
    """Between passes: remembers the models, decides the events, hands their requests to the sender.

    observe() is called after every git pass the daemon completes; it never raises into the pass.
    """

    def __init__(self, sinks: Sequence[Sink], sender: Sender, *, cluster: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.sinks = tuple(sinks)
        self.sender = sender
        self.cluster = cluster
        self.clock = clock
        self._tracked: Mapping[str, Tracked] | None = None

    def _drop_memory(self) -> None:
        self._tracked = None  # the next pass here seeds again

    def observe(self, done: GitPassResult, instance: str = "default",
                generation: int | None = None) -> tuple[Event, ...]:
        """`generation`: self.generation when the pass started (None: not checked)."""
        result = done.sync
        if result.dry_run or result.abandoned:
            return ()  # a partial pass says nothing reliable about the models it did not reach
        with self._lock:
            if self._outlived(generation):
                # Leadership was lost while the pass ran: the other leader announces now, and storing this pass's
                # view would make the next term here diff against it instead of seeding.
                return ()
            decision = decide(self._tracked, done.reports, written=written_models(result),
                              pruned=pruned_models(result), revision=done.revision)
            self._tracked = decision.tracked
        if decision.events:
            if result.desired is not None:
                instance = result.desired.load.config.instance
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))
            origin = Origin(self.cluster, instance, stamp)
            for sink in self.sinks:
                self.sender.submit(requests_for(sink, decision.events, origin))
        return decision.events

    def stop(self, timeout_s: float = 5.0) -> None:
        self.sender.stop(timeout_s)


__all__ = ["Event", "LeaderTerms", "Notifier", "Sender", "Sink", "Tracked", "decide", "requests_for"]
