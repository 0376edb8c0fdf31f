"""The scheduler: first pass at start, triggers coalesce, never two passes at once, failures back off."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import pytest

from gitops_kaito.service.daemon import Daemon, DaemonSettings, PassContext
from gitops_kaito.service.metrics import Metrics


@dataclass(frozen=True)
class Report:
    ok: bool
    summary: str


class Recorder:
    """A pass that records overlap and can be held open by the test."""

    def __init__(self, fail_first: int = 0) -> None:
        self.active = 0
        self.max_active = 0
        self.reasons: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def __call__(self, ctx: PassContext) -> Report:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.reasons.append(ctx.reason)
        self.entered.set()
        self.release.wait(10)
        with self._lock:
            self.active -= 1
            failing = len(self.reasons) <= self.fail_first
        return Report(not failing, "failed on purpose" if failing else "ok")


def test_first_pass_then_trigger_runs_without_waiting_for_interval() -> None:
    rec = Recorder()
    daemon = Daemon(DaemonSettings(interval_s=3600, jitter_s=0), rec, Metrics())
    daemon.start()
    try:
        assert daemon.wait_for_passes(1, 10)
        daemon.trigger("webhook github abc")
        assert daemon.wait_for_passes(2, 10)
        assert rec.reasons[1] == "webhook github abc"
        assert daemon.readiness().ok
    finally:
        daemon.stop()


def test_never_two_passes_at_once_and_triggers_coalesce() -> None:
    rec = Recorder()
    rec.release.clear()
    daemon = Daemon(DaemonSettings(interval_s=3600, jitter_s=0), rec, Metrics())
    daemon.start()
    try:
        assert rec.entered.wait(10)
        for i in range(5):
            daemon.trigger(f"hook {i % 2}")
        rec.release.set()
        assert daemon.wait_for_passes(2, 10)
        assert rec.max_active == 1
        # Five deliveries while a pass ran collapse into one follow-up pass naming both distinct reasons.
        assert rec.reasons[1] == "hook 0, hook 1"
    finally:
        daemon.stop()


def test_failed_pass_retries_with_backoff_and_metrics_count() -> None:
    rec = Recorder(fail_first=1)
    metrics = Metrics()
    daemon = Daemon(DaemonSettings(interval_s=3600, jitter_s=0, backoff_initial_s=0.05), rec, metrics)
    daemon.start()
    try:
        assert daemon.wait_for_passes(2, 10), "the failed pass was not retried before the interval"
        text = metrics.render().decode()
        assert 'gitops_kaito_passes_total{result="failure"} 1.0' in text
        assert 'gitops_kaito_passes_total{result="success"} 1.0' in text
        assert daemon.readiness().ok
    finally:
        daemon.stop()


def test_stop_waits_for_running_pass_and_tells_it_to_stop() -> None:
    seen: list[bool] = []
    entered = threading.Event()
    release = threading.Event()

    def slow(ctx: PassContext) -> Report:
        entered.set()
        release.wait(10)
        seen.append(ctx.should_continue())
        return Report(True, "ok")

    daemon = Daemon(DaemonSettings(interval_s=3600, jitter_s=0), slow, Metrics())
    daemon.start()
    assert entered.wait(10)
    stopper = threading.Thread(target=daemon.stop)
    stopper.start()
    deadline = time.monotonic() + 10
    while daemon.health().ok and time.monotonic() < deadline:
        stopper.join(0.01)  # wait on the stop flag being raised, not on a fixed delay
    release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert seen == [False], "a pass running during stop must be told not to continue"
    assert not daemon.health().ok


def test_a_new_interval_takes_effect_without_a_restart() -> None:
    rec = Recorder()
    daemon = Daemon(DaemonSettings(interval_s=3600, jitter_s=0), rec, Metrics())
    daemon.start(run_first_now=False)
    try:
        assert not daemon.wait_for_passes(1, 0.3), "a pass ran although the interval is an hour"
        daemon.reschedule(1, 0)
        assert daemon.wait_for_passes(2, 10), "the new 1s interval did not drive passes"
        assert rec.reasons[:2] == ["interval", "interval"]
        assert daemon.settings.interval_s == 1
    finally:
        daemon.stop()


def test_triggers_during_a_pass_log_no_warning_and_each_is_run(caplog: pytest.LogCaptureFixture) -> None:
    """A webhook or a cluster change that arrives while a pass runs is routine: no scheduler warning ("maximum
    number of running instances reached"), and the follow-up pass runs it, however the pass and trigger race."""
    caplog.set_level(logging.WARNING)
    rec = Recorder()
    rec.release.clear()
    daemon = Daemon(DaemonSettings(interval_s=3600, jitter_s=0), rec, Metrics())
    daemon.start()
    try:
        for round_ in range(3):
            assert rec.entered.wait(10)
            rec.entered.clear()
            daemon.trigger(f"hook {round_}")
            assert wait_for_record(caplog, "maximum number of running instances", 0.5) is None
            rec.release.set()
            assert daemon.wait_for_passes(round_ + 2, 10)
            rec.release.clear()
        assert rec.reasons[1:] == ["hook 0", "hook 1", "hook 2"]
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        rec.release.set()
        daemon.stop()


def wait_for_record(caplog: pytest.LogCaptureFixture, text: str, timeout_s: float) -> logging.LogRecord | None:
    """The first log record containing `text`, waiting up to timeout_s for the scheduler's thread to log it."""
    tick = threading.Event()  # never set: its wait is the poll interval
    deadline = time.monotonic() + timeout_s
    while True:
        found = [r for r in caplog.records if text in r.getMessage()]
        if found or time.monotonic() >= deadline:
            return found[0] if found else None
        tick.wait(0.02)
