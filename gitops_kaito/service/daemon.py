"""The long-running reconciler: passes on an interval with jitter (APScheduler), at once on a webhook,
never two at a time, with backoff after failures and a clean stop on SIGTERM.

The pass itself is a callable handed in (see gitops_kaito.reconcile.gitsync); this module only decides *when* it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from apscheduler.jobstores.base import ConflictingIdError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from gitops_kaito.service.leader import LeaderElector
from gitops_kaito.service.metrics import Metrics
from gitops_kaito.service.webserver import Probe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassContext:
    """Handed to each pass: why it runs, and whether it may go on (stop requested or leadership lost)."""

    reason: str
    should_continue: Callable[[], bool]


class PassReport(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def summary(self) -> str: ...


RunPass = Callable[[PassContext], PassReport]


@dataclass(frozen=True)
class DaemonSettings:
    interval_s: float = 60.0
    jitter_s: float = 5.0
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 300.0


class Daemon:
    def __init__(self, settings: DaemonSettings, run_pass: RunPass, metrics: Metrics,
                 elector: LeaderElector | None = None) -> None:
        self.settings = settings
        self.run_pass = run_pass
        self.metrics = metrics
        self.elector = elector
        self._stop = threading.Event()
        self._pending: list[str] = []
        self._pending_lock = threading.Lock()
        self._running = threading.Lock()  # never two passes at once, whoever asks
        self._failures = 0
        self._last_ok: float | None = None
        self._passes_done = 0
        self._done = threading.Condition()
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._elector_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self, run_first_now: bool = True) -> None:
        if self.elector is not None:
            self._elector_thread = threading.Thread(target=self.elector.run, args=(self._stop,),
                                                    name="leader-election", daemon=True)
            self._elector_thread.start()
        first = datetime.now(UTC) if run_first_now else None
        self._scheduler.add_job(self._job, self._trigger(), id="pass", max_instances=2, coalesce=True,
                                next_run_time=first, misfire_grace_time=None)
        self._scheduler.start()

    def _trigger(self) -> IntervalTrigger:
        return IntervalTrigger(seconds=self.settings.interval_s, jitter=self.settings.jitter_s or None, timezone=UTC)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Ask the running pass to stop at its next safe point, wait for it, then shut down."""
        self._stop.set()
        self._scheduler.shutdown(wait=False)
        if self._running.acquire(timeout=timeout_s):
            self._running.release()
        else:
            log.warning("stop: the current pass did not finish within %.0fs; abandoning it", timeout_s)
        if self._elector_thread is not None:
            self._elector_thread.join(timeout=5)

    def reschedule(self, interval_s: float, jitter_s: float) -> None:
        """A new interval (the repository's `daemon.interval` changed): the next pass is one new interval away.

        Called from within a pass: a failure backoff the pass then sets still applies.
        """
        if (interval_s, jitter_s) == (self.settings.interval_s, self.settings.jitter_s):
            return
        self.settings = replace(self.settings, interval_s=interval_s, jitter_s=jitter_s)
        if self._scheduler.running and not self._stop.is_set():
            self._scheduler.reschedule_job("pass", trigger=self._trigger())
        log.info("interval is now %gs (jitter %gs)", interval_s, jitter_s)

    def trigger(self, reason: str, delay_s: float = 0.0) -> None:
        """Run a pass as soon as possible (a webhook arrived, the cluster changed), or in `delay_s` (a status commit
        held back). Coalesces with one already queued."""
        if delay_s > 0:
            # A one-shot job of its own that triggers then: queued now, the reason would be run at once by the job of
            # a pass under way (the very pass that held its status commit back).
            if self._scheduler.running and not self._stop.is_set():
                try:
                    self._scheduler.add_job(self.trigger, "date", args=(reason,), id=f"later:{reason}",
                                            misfire_grace_time=None,
                                            run_date=datetime.now(UTC) + timedelta(seconds=delay_s))
                except ConflictingIdError:  # one is queued already, as soon or sooner
                    pass
            return
        with self._pending_lock:
            if reason not in self._pending:
                self._pending.append(reason)
            busy = self._running.locked()  # read with the append: _job decides to end under the same lock
        if busy:
            return  # the running pass's job runs the pending reasons when it ends (_job)
        if self._scheduler.running and not self._stop.is_set():
            self._scheduler.modify_job("pass", next_run_time=datetime.now(UTC))

    # -- probes ----------------------------------------------------------------------------------------
    def health(self) -> Probe:
        return Probe(not self._stop.is_set(), "stopping" if self._stop.is_set() else "ok")

    def readiness(self) -> Probe:
        """Ready once a pass succeeded; a replica that cannot act says why (and what to do), a follower who leads."""
        if self.elector is not None and self.elector.problem:
            return Probe(False, f"cannot act: {self.elector.problem}")
        if self._last_ok is None:
            if self.elector is not None and self.elector.holder and not self.elector.is_leader:
                return Probe(False, f"standing by: the Lease is held by {self.elector.holder}; only the leader passes")
            return Probe(False, "no successful pass yet")
        return Probe(True, f"last successful pass {time.time() - self._last_ok:.0f}s ago")

    @property
    def passes_done(self) -> int:
        return self._passes_done

    def wait_for_passes(self, count: int, timeout_s: float) -> bool:
        """Block until `count` passes have completed in total (for tests and the demo)."""
        with self._done:
            return self._done.wait_for(lambda: self._passes_done >= count, timeout=timeout_s)

    # -- the job ---------------------------------------------------------------------------------------
    def _may_act(self) -> bool:
        return not self._stop.is_set() and (self.elector is None or self.elector.is_leader)

    def _job(self) -> None:
        """One scheduled run: the pass, then, in the same run, a pass for the triggers that came meanwhile.

        Re-arming the scheduler from inside the job raced with the job's own end: the scheduler could fire while
        this run still counted, skip it (with a warning) and leave the trigger waiting a whole interval. Now a
        trigger during a pass only queues its reason, and whether this run goes on is decided, and the pass lock
        released, under the queue's lock. Two instances may exist (max_instances=2): one that found the lock held
        and waited for it runs only if reasons are left (an interval tick during a pass is that pass).
        """
        waited = not self._running.acquire(blocking=False)
        if waited:
            self._running.acquire()
        held = True
        try:
            while True:
                with self._pending_lock:
                    reasons = self._pending[:]
                    self._pending.clear()
                if waited and not reasons:
                    return
                waited = False
                reason = ", ".join(reasons) or "interval"
                if not self._may_act():
                    log.info("pass skipped: not the leader", extra={"fields": {"reason": reason}})
                    return
                self._one_pass(reason)
                with self._pending_lock:
                    if not self._pending or self._stop.is_set() or self._failures:
                        # After a failure, the backoff _one_pass scheduled runs the pending reasons.
                        self._running.release()
                        held = False
                        return
        finally:
            if held:
                self._running.release()

    def _one_pass(self, reason: str) -> None:
        started = time.monotonic()
        ok = False
        try:
            report = self.run_pass(PassContext(reason=reason, should_continue=self._may_act))
            ok = report.ok
            # A pass that went well is routine (info); one that failed is a problem (error).
            log.log(logging.INFO if ok else logging.ERROR, "pass %s: %s", "ok" if ok else "failed", report.summary,
                    extra={"fields": {"reason": reason, "duration_s": round(time.monotonic() - started, 3)}})
        except Exception:
            log.exception("pass crashed", extra={"fields": {"reason": reason}})
        duration = time.monotonic() - started
        result = "success" if ok else "failure"
        self.metrics.pass_duration.labels(result=result).observe(duration)
        self.metrics.passes.labels(result=result).inc()
        if ok:
            self._failures = 0
            self._last_ok = time.time()
            self.metrics.last_success.set(self._last_ok)
        else:
            self._failures += 1
            delay = min(self.settings.backoff_initial_s * 2 ** (self._failures - 1), self.settings.backoff_max_s,
                        self.settings.interval_s)
            if not self._stop.is_set():
                log.warning("retrying in %.1fs (failure %d in a row)", delay, self._failures)
                self._scheduler.modify_job("pass", next_run_time=datetime.now(UTC) + timedelta(seconds=delay))
        with self._done:
            self._passes_done += 1
            self._done.notify_all()
