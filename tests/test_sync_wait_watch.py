"""`sync --wait` woken by the cluster: a change to a model's objects (KAITO's status moving) ends the pause at once,
so the wait does not sit out its poll interval; Ctrl-C (Interrupt) ends a pause at once too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gitops_kaito.cli import main
from gitops_kaito.cli.syncwait import READY, Interrupt, PassView, WaitOutcome, WaitSettings, wait_ready
from gitops_kaito.core.status import ModelReport
from gitops_kaito.sandbox import Sandbox, SandboxSettings
from gitops_kaito.sandbox.controllers import Timing
from tests.gitfixtures import model_file

# KAITO takes a moment: the first pass sees the model on its way, never Ready.
LOADING = SandboxSettings(speed="fast", timing=Timing(condition_step_s=0.05, model_load_s=1.5, resync_s=0.5))
HOUR = 3600.0


@pytest.mark.parametrize("sandbox", [LOADING], indirect=True)
def test_kaitos_status_change_ends_the_wait_long_before_the_interval(sandbox: Sandbox, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--interval 1h: only a wake-up from the watch can run the pass that sees the model Ready before --timeout
    (120 s, the guard: without the wake-up the wait ends there, exit 1, Timeout)."""
    repo = tmp_path / "repo"
    (repo / "models" / "default").mkdir(parents=True)
    (repo / "models" / "default" / "phi.yaml").write_text(model_file("phi", namespace="default"))
    code = main(["sync", "--repo", str(repo), "--kubeconfig", str(sandbox.kubeconfig_path), "--wait",
                 "--interval", "1h", "--timeout", "120s", "-o", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert (code, doc["result"]) == (0, READY), doc["message"]
    [model] = doc["models"]
    assert model["model"] == "default/phi" and model["state"] == "Ready"
    assert doc["passes"] >= 2  # the first pass saw it loading; a later one, woken, saw it Ready


def report(state: str) -> ModelReport:
    return ModelReport(model_id="ml.phi", namespace="ml", name="phi", state=state, message=state.lower())


def waiting(passes: list[str], wake: threading.Event, stop: threading.Event,
            on_pass: Callable[[PassView], None]) -> tuple[threading.Thread, list[WaitOutcome]]:
    """wait_ready in a thread, over scripted passes (one state each), an hour between passes unless woken."""
    states = iter(passes)
    out: list[WaitOutcome] = []

    def one(_: Callable[[], bool]) -> PassView:
        return PassView((report(next(states)),))

    def run() -> None:
        out.append(wait_ready(one, WaitSettings(timeout_s=HOUR, interval_s=HOUR, tick_s=HOUR), stop=stop, wake=wake,
                              on_pass=on_pass))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_a_wake_up_runs_the_next_pass_at_once() -> None:
    wake, stop = threading.Event(), threading.Event()
    thread, out = waiting(["Provisioning", "Provisioning", "Ready"], wake, stop,
                          on_pass=lambda view: wake.set())  # after every pass: "the cluster changed since"
    thread.join(timeout=30)
    assert not thread.is_alive(), "a wake-up did not end the pause"
    [outcome] = out
    assert (outcome.verdict, outcome.passes) == (READY, 3)


def test_interrupt_ends_a_pause_that_waits_for_a_wake_up() -> None:
    """Interrupt sets the wake-up with its stop: the pause (an hour, ticking hourly) ends at once."""
    wake = threading.Event()
    interrupt = Interrupt(wake)
    passed = threading.Event()
    thread, out = waiting(["Provisioning"] * 2, wake, interrupt.event, on_pass=lambda view: passed.set())
    assert passed.wait(timeout=30)
    interrupt.stop()
    thread.join(timeout=30)
    assert not thread.is_alive(), "stop did not end the pause"
    assert out[0].verdict == "Interrupted" and out[0].passes == 1
