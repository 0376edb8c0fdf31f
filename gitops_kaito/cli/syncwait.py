"""`sync --wait`: reconcile passes until every model is Ready, none can get further, or time runs out; a pass at each
interval and, woken by the watch, as soon as something of the models changes in the cluster (KAITO's status).
Level-triggered: each pass is what moves node gating (NodeClaims, Machines, agent pools) forward.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gitops_kaito.core.status import ModelReport
from gitops_kaito.model.states import SETTLED, TROUBLE

log = logging.getLogger(__name__)

READY = "Ready"
FAILED = "Failed"
TIMEOUT = "Timeout"
INTERRUPTED = "Interrupted"

# A write that failed may well succeed on the next pass (a conflict, a 5xx); KAITO's terminal reasons will not.
RETRYABLE_REASONS = frozenset({"ApplyFailed"})


class PassFailed(Exception):
    """A pass could not run (cluster or Git unreachable for a moment): the next one may, until the deadline."""


@dataclass(frozen=True)
class WaitSettings:
    timeout_s: float = 1800.0
    interval_s: float = 5.0
    retries: int = 3  # passes a retryable failure must last before it counts as final
    tick_s: float = 1.0  # how often the display is refreshed between passes (the elapsed time moves)
    settle_s: float = 0.1  # after a wake-up, how long the rest of a burst of changes (KAITO's steps) is gathered


@dataclass(frozen=True)
class PassView:
    """What one pass left: the health report of every model, and the pass's own errors."""

    reports: tuple[ModelReport, ...]
    errors: tuple[str, ...] = ()
    revision: str = ""


@dataclass(frozen=True)
class WaitOutcome:
    verdict: str  # Ready | Failed | Timeout | Interrupted
    reports: tuple[ModelReport, ...]
    elapsed_s: float
    passes: int
    revision: str = ""
    errors: tuple[str, ...] = ()
    pass_errors: tuple[str, ...] = ()  # passes that raised (retried until the deadline)

    @property
    def failed(self) -> tuple[ModelReport, ...]:
        return tuple(r for r in self.reports if r.state in TROUBLE)

    @property
    def pending(self) -> tuple[ModelReport, ...]:
        return tuple(r for r in self.reports if r.state not in SETTLED and r.state not in TROUBLE)

    @property
    def ok(self) -> bool:
        return self.verdict == READY


def settled(reports: Sequence[ModelReport], streaks: dict[str, int], retries: int) -> bool:
    """True when no model can get further by waiting: each one Ready/Suspended or in a final failure."""
    return all(r.state in SETTLED or final_failure(r, streaks.get(r.model_id, 0), retries) for r in reports)


def final_failure(report: ModelReport, streak: int, retries: int) -> bool:
    if report.state not in TROUBLE:
        return False
    return report.reason not in RETRYABLE_REASONS or streak >= retries


class Interrupt:
    """Ctrl-C asks the wait to stop after the pass in flight (which stops at its next apply wave); a second
    Ctrl-C interrupts at once. Outside the main thread signals cannot be caught: only stop() is honoured."""

    def __init__(self, wake: threading.Event | None = None) -> None:
        self.event = threading.Event()
        self.wake = wake  # the wait's wake-up: set too, so a pause ends at once
        self._previous: object = None

    def __enter__(self) -> Interrupt:
        import signal

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._previous = None

    def _handle(self, signum: int, frame: object) -> None:
        import signal

        self.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def stop(self) -> None:
        self.event.set()
        if self.wake is not None:
            self.wake.set()

    def should_continue(self) -> bool:
        return not self.event.is_set()


def wait_ready(run_pass: Callable[[Callable[[], bool]], PassView], settings: WaitSettings, *,
               first: PassView | None = None, stop: threading.Event | None = None,
               on_pass: Callable[[PassView], None] | None = None, on_tick: Callable[[], None] | None = None,
               on_error: Callable[[str], None] | None = None, wake: threading.Event | None = None,
               clock: Callable[[], float] = time.monotonic) -> WaitOutcome:
    """Run passes until settled, the timeout, or `stop`. `run_pass(should_continue)` runs one pass; one that
    raises PassFailed is reported through `on_error` and retried at the next interval (the deadline holds).

    `first`: a pass already run by the caller (the plain `sync` pass), counted as the first.
    `wake`: set (by the watch) when something of the models changed in the cluster: the pause ends, after
    `settle_s` for the rest of the burst, and a pass runs at once. Whoever sets `stop` sets `wake` too (Interrupt
    does), else a stop is seen at the next tick.
    """
    stop = stop or threading.Event()
    started = clock()
    deadline = started + settings.timeout_s
    streaks: dict[str, int] = {}
    view = first
    passes = 1 if first is not None else 0
    pass_errors: list[str] = []

    def should_continue() -> bool:
        return not stop.is_set()

    def done(verdict: str) -> WaitOutcome:
        reports = view.reports if view else ()
        return WaitOutcome(verdict, reports, clock() - started, passes, view.revision if view else "",
                           view.errors if view else (), tuple(pass_errors))

    while True:
        if view is not None:
            for r in view.reports:
                streaks[r.model_id] = streaks.get(r.model_id, 0) + 1 if r.state in TROUBLE else 0
            if on_pass is not None:
                on_pass(view)
            if settled(view.reports, streaks, settings.retries):
                return done(FAILED if any(r.state in TROUBLE for r in view.reports) else READY)
        if passes and not _pause(deadline, settings, stop, wake, on_tick, clock):
            return done(INTERRUPTED if stop.is_set() else TIMEOUT)
        try:
            fresh = run_pass(should_continue)
        except PassFailed as err:
            passes += 1
            pass_errors.append(str(err))
            log.warning("sync --wait: pass failed, retrying: %s", err)
            if on_error is not None:
                on_error(str(err))
            continue
        passes += 1
        view = fresh
        if stop.is_set():  # the pass stopped at its next wave: show what it saw and wait no longer
            if on_pass is not None:
                on_pass(view)
            return done(INTERRUPTED)


def _pause(deadline: float, settings: WaitSettings, stop: threading.Event, wake: threading.Event | None,
           on_tick: Callable[[], None] | None, clock: Callable[[], float]) -> bool:
    """Wait one interval, or until woken (ticking the display); False when the deadline passed or stop was asked."""
    until = min(clock() + settings.interval_s, deadline)
    while True:
        left = until - clock()
        if left <= 0:
            break
        if (wake or stop).wait(min(left, settings.tick_s)):
            if stop.is_set() or wake is None:
                return False
            # Woken by a change: KAITO moves a model through several conditions in a row, one pass sees them all.
            stop.wait(max(0.0, min(settings.settle_s, until - clock())))
            wake.clear()
            break
        if stop.is_set():
            return False
        if on_tick is not None:
            on_tick()
    return clock() < deadline and not stop.is_set()
