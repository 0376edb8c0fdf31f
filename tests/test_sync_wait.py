"""`gitops-kaito sync --wait` and the progress display: passes until Ready, a failure named, a timeout, Ctrl-C,
the plain (CI) and live (terminal) renderings, and the wait's decisions on scripted passes.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gitops_kaito.cli import main
from gitops_kaito.cli.progress import ModelProgress, Progress, format_elapsed, render_table, summary
from gitops_kaito.cli.syncwait import FAILED, READY, TIMEOUT, PassFailed, PassView, WaitSettings, wait_ready
from gitops_kaito.core.status import ModelReport
from gitops_kaito.sandbox import Sandbox, SandboxSettings
from gitops_kaito.sandbox.controllers import Timing
from tests.fixtures_cluster import ClusterTarget, skip_on_real
from tests.gitfixtures import Developer, Remote, model_file

ANSI = "\x1b["
# Slow enough that several passes see each step, so "one line per change" is tested against repeats.
STEPPED = SandboxSettings(speed="fast", timing=Timing(launch_s=0.2, register_s=0.2, condition_step_s=0.1,
                                                      model_load_s=0.6, resync_s=0.2))
# The model never finishes loading while a test runs: it stays Provisioning.
STUCK = SandboxSettings(speed="fast", timing=Timing(model_load_s=3600))


def write_model(repo: Path, namespace: str, name: str, model: str = "phi-4-mini-instruct", extra: str = "") -> None:
    path = repo / "models" / namespace / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_file(name, model, namespace) + extra)


def write_stuck(repo: Path) -> None:
    write_model(repo, "default", "stuck")


def sync_wait(repo: Path, kubeconfig: Path, *extra: str) -> int:
    return main(["sync", "--repo", str(repo), "--kubeconfig", str(kubeconfig), "--wait", "--interval", "0.05s",
                 *extra])


# -- against the sandbox ----------------------------------------------------------------------------------------

@pytest.mark.cluster
def test_a_model_reaches_ready_and_the_final_table_is_printed(cluster: ClusterTarget, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    skip_on_real(cluster, "simulated KAITO makes a model Ready in seconds")
    repo = tmp_path / "repo"
    write_model(repo, cluster.namespace, "phi")
    assert sync_wait(repo, cluster.kubeconfig, "--timeout", "60s") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["MODEL", "STATE", "SKU X NODES", "MESSAGE"]
    assert re.split(r"\s{2,}", lines[1])[:2] == [f"{cluster.namespace}/phi", "Ready"]
    assert " x 1" in lines[1] and f"http://phi.{cluster.namespace}.svc" in lines[1]
    assert re.fullmatch(r"1/1 Ready after \d+s \(\d+ pass(es)?\)", lines[-1])


@pytest.mark.cluster
def test_an_unavailable_sku_exits_1_naming_the_model_and_the_reason(cluster: ClusterTarget, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    skip_on_real(cluster, "needs an injected sku-unavailable failure")
    assert cluster.sandbox is not None
    ns = cluster.namespace
    repo = tmp_path / "repo"
    write_model(repo, ns, "good", "qwen2.5-coder-7b-instruct")
    write_model(repo, ns, "nosku")
    failure = cluster.sandbox.inject("sku-unavailable", workspace="nosku", namespace=ns)
    try:
        code = sync_wait(repo, cluster.kubeconfig, "--timeout", "60s")
    finally:
        cluster.sandbox.clear_failures(failure)
    out = capsys.readouterr().out
    assert code == 1
    verdict = out.splitlines()[-1]
    # The other model was waited for: the verdict comes when nothing can get further.
    assert verdict.startswith("1/2 Ready, 1 Failed; no model can get further: ")
    assert f"{ns}/nosku Failed" in verdict and "unavailable during launch" in verdict
    assert f"{ns}/good" not in verdict


@pytest.mark.parametrize("sandbox", [STUCK], indirect=True)
def test_a_short_timeout_exits_1_listing_the_pending_model(sandbox: Sandbox, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    write_stuck(repo)
    assert sync_wait(repo, sandbox.kubeconfig_path, "--timeout", "0.5s", "-o", "json") == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert captured.err == "", "-o json shows no progress"
    assert doc["result"] == TIMEOUT and doc["ready"] is False and doc["passes"] >= 2
    [model] = doc["models"]
    assert model["model"] == "default/stuck" and model["state"] in ("Pending", "Provisioning") and model["message"]
    assert doc["message"].startswith("timed out after ") and f"default/stuck {model['state']} (" in doc["message"]
    assert model["message"] in doc["message"]


@pytest.mark.parametrize("sandbox", [STUCK], indirect=True)
def test_table_timeout_lists_the_pending_model_with_its_last_message(sandbox: Sandbox, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    write_stuck(repo)
    assert sync_wait(repo, sandbox.kubeconfig_path, "--timeout", "0.3s", "--quiet") == 1
    captured = capsys.readouterr()
    assert captured.err == "", "--quiet shows no progress"
    verdict = captured.out.splitlines()[-1]
    assert re.match(r"timed out after \d+s \(0/1 Ready, 1 (Pending|Provisioning)\); still waiting for default/stuck ",
                    verdict)


@pytest.mark.parametrize("sandbox", [STEPPED], indirect=True)
def test_plain_output_is_one_line_per_change_without_ansi(sandbox: Sandbox, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "default", "phi")
    assert sync_wait(repo, sandbox.kubeconfig_path, "--timeout", "60s") == 0
    captured = capsys.readouterr()
    assert ANSI not in captured.err and ANSI not in captured.out
    lines = captured.err.splitlines()
    passes = int(re.search(r"\((\d+) passes\)", captured.out).group(1))  # type: ignore[union-attr]
    assert all(re.match(r"\[\d+(m\d\ds)?s\] default/phi: ", line) for line in lines), lines
    bodies = [line.split("] ", 1)[1] for line in lines]
    assert all(a != b for a, b in itertools.pairwise(bodies)), "a line only when something changed"
    assert len(lines) < passes, "passes that saw nothing new printed nothing"
    states = [b.split(": ", 1)[1].split(" ", 1)[0] for b in bodies]
    assert states[-1] == "Ready" and "Provisioning" in states


@pytest.mark.cluster
def test_git_url_waits_and_writes_status_back(cluster: ClusterTarget, remote: Remote, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    skip_on_real(cluster, "simulated KAITO makes a model Ready in seconds")
    dev = Developer(remote, tmp_path / "dev")
    dev.write(f"models/{cluster.namespace}/phi.yaml", model_file("phi", namespace=cluster.namespace))
    dev.commit("add phi")
    code = main(["sync", "--git-url", remote.url, "--cache-dir", str(tmp_path / "cache"), "--kubeconfig",
                 str(cluster.kubeconfig), "--wait", "--interval", "0.05s", "--timeout", "60s"])
    captured = capsys.readouterr()
    assert code == 0, captured
    assert "state: Ready" in remote.show(f"status/{cluster.namespace}/phi.yaml")
    assert "status: committed " in captured.err


@pytest.mark.parametrize("sandbox", [STUCK], indirect=True)
def test_ctrl_c_stops_cleanly_with_exit_130(sandbox: Sandbox, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_stuck(repo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitops_kaito", "sync", "--repo", str(repo), "--kubeconfig",
         str(sandbox.kubeconfig_path), "--wait", "--interval", "0.05s", "--timeout", "5m"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the first progress line: the first pass is done, the wait has begun
        assert "default/stuck: " in first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert out.splitlines()[-1].startswith("interrupted after ") and "default/stuck" in out.splitlines()[-1]


def test_wait_refuses_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", "--repo", str(tmp_path), "--wait", "--dry-run"]) == 2
    assert "--dry-run" in capsys.readouterr().err


def test_a_bad_timeout_is_a_plain_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", "--repo", str(tmp_path), "--wait", "--timeout", "soon"]) == 2
    assert "not a duration: 'soon'" in capsys.readouterr().err


# -- the wait's decisions, on scripted passes ----------------------------------------------------------------

def report(name: str, state: str, reason: str = "", message: str = "") -> ModelReport:
    return ModelReport(f"ml.{name}", "ml", name, state, reason=reason, message=message)


class Script:
    """Passes that return prepared views; each pass moves a fake clock on by one second."""

    def __init__(self, *views: tuple[ModelReport, ...] | Exception) -> None:
        self.views = list(views)
        self.now = 0.0
        self.calls = 0

    def clock(self) -> float:
        return self.now

    def __call__(self, should_continue: Callable[[], bool]) -> PassView:
        self.now += 1
        self.calls += 1
        view = self.views[min(self.calls - 1, len(self.views) - 1)]
        if isinstance(view, Exception):
            raise view
        return PassView(view)


def run_script(script: Script, timeout: float = 100, stop: threading.Event | None = None,
               errors: list[str] | None = None) -> tuple[str, tuple[ModelReport, ...], int]:
    outcome = wait_ready(script, WaitSettings(timeout_s=timeout, interval_s=0), clock=script.clock, stop=stop,
                         on_error=(errors.append if errors is not None else None))
    return outcome.verdict, outcome.reports, outcome.passes


def test_waits_for_the_others_after_one_fails_then_names_it() -> None:
    script = Script((report("a", "Failed", "NodeProvisioningFailed"), report("b", "Provisioning")),
                    (report("a", "Failed", "NodeProvisioningFailed"), report("b", "Provisioning")),
                    (report("a", "Failed", "NodeProvisioningFailed"), report("b", "Ready")))
    verdict, reports, passes = run_script(script)
    assert (verdict, passes) == (FAILED, 3)
    assert [r.state for r in reports] == ["Failed", "Ready"]


def test_a_failed_write_is_retried_before_it_counts() -> None:
    failed_write = (report("a", "Failed", "ApplyFailed"),)
    assert run_script(Script(failed_write, (report("a", "Ready"),)))[0] == READY
    assert run_script(Script(failed_write))[0:3:2] == (FAILED, 3)


def test_suspended_models_are_not_waited_for() -> None:
    assert run_script(Script((report("a", "Ready"), report("b", "Suspended"))))[0:3:2] == (READY, 1)


def test_timeout_keeps_the_last_reports() -> None:
    verdict, reports, passes = run_script(Script((report("a", "Provisioning", message="waiting for nodes"),)),
                                          timeout=3)
    assert verdict == TIMEOUT and passes == 3 and reports[0].message == "waiting for nodes"


def test_a_pass_that_cannot_run_is_retried() -> None:
    errors: list[str] = []
    script = Script(PassFailed("connection refused"), (report("a", "Ready"),))
    assert run_script(script, errors=errors)[0:3:2] == (READY, 2)
    assert errors == ["connection refused"]


def test_stop_ends_the_wait_after_the_pass_in_flight() -> None:
    stop = threading.Event()
    script = Script((report("a", "Provisioning"),))

    def stopping(should_continue: Callable[[], bool]) -> PassView:
        view = script(should_continue)
        stop.set()
        assert not should_continue(), "the pass in flight is told to stop at its next wave"
        return view

    outcome = wait_ready(stopping, WaitSettings(interval_s=0), clock=script.clock, stop=stop)
    assert outcome.verdict == "Interrupted" and outcome.passes == 1


# -- the renderer ---------------------------------------------------------------------------------------------

LONG = "NodeClaim ws1: LaunchFailed: creating instance, insufficient capacity, all requested instance types " \
       "were unavailable during launch"


@pytest.mark.parametrize("width", [40, 60, 80, 260])
def test_table_lines_fit_the_terminal_width(width: int) -> None:
    lines = render_table(("model", "state", "sku x nodes", "message"),
                         [("ml/phi", "Failed", "Standard_NC24ads_A100_v4 x 2", LONG),
                          ("ml/qwen-coder-with-a-long-name", "Ready", "", "")], width)
    assert len(lines) == 3 and all(len(line) <= width for line in lines)
    assert lines[1].startswith("  ml/phi")
    if width < 120:
        assert lines[1].endswith("…")
    else:
        assert lines[1].endswith("during launch")


def test_the_message_is_cut_before_other_columns() -> None:
    [_, row] = render_table(("model", "state", "message"), [("ml/phi", "Provisioning", LONG)], 50)
    assert row.startswith("  ml/phi   Provisioning   NodeClaim") and row.endswith("…") and len(row) == 50


def test_live_frames_redraw_in_place_within_the_width() -> None:
    out = io.StringIO()
    progress = Progress(out, live=True, size=lambda: (50, 24))
    progress.show([("ml/phi", "Provisioning", "Standard_NC24ads_A100_v4 x 1", "line one\nline two\x1b[31m")],
                  footer="0/1 Ready, 1 Provisioning, 3s elapsed")
    first = out.getvalue()
    assert first.count("\n") == 3, "control characters in a message never add lines"
    assert all(len(line) <= 49 for line in first.splitlines())
    assert "\x1b[31m" not in first
    progress.show([("ml/phi", "Ready", "Standard_NC24ads_A100_v4 x 1", "")], footer="1/1 Ready, 4s elapsed")
    second = out.getvalue()[len(first):]
    assert second.startswith("\x1b[3F\x1b[J") and "Ready" in second
    progress.close(clear=True)
    assert out.getvalue().endswith("\x1b[3F\x1b[J")


def test_live_frames_never_grow_taller_than_the_terminal() -> None:
    out = io.StringIO()
    progress = Progress(out, live=True, size=lambda: (80, 6))
    progress.show([(f"ml/m{i}", "Pending", "", "") for i in range(10)], footer="0/10 Ready")
    lines = out.getvalue().splitlines()
    assert len(lines) <= 5 and "and 8 more" in lines[-2] and lines[-1] == "0/10 Ready"


def test_quiet_prints_nothing() -> None:
    out = io.StringIO()
    display = ModelProgress(out, live=True, quiet=True)
    display.update([report("a", "Provisioning")])
    display.say("hello")
    display.close(clear=True)
    assert out.getvalue() == ""


def test_plain_mode_prints_changes_with_the_elapsed_time() -> None:
    out = io.StringIO()
    now = [0.0]
    display = ModelProgress(out, live=False, clock=lambda: now[0])
    for t, state in ((0, "Pending"), (5, "Pending"), (70, "Provisioning"), (130, "Ready")):
        now[0] = t
        display.update([report("a", state)])
    assert out.getvalue().splitlines() == ["[0s] ml/a: Pending", "[1m10s] ml/a: Provisioning",
                                           "[2m10s] ml/a: Ready"]


def test_summary_line() -> None:
    reports = [report("a", "Ready"), report("b", "Ready"), report("c", "Ready"), report("d", "Provisioning"),
               report("e", "Failed")]
    assert summary(reports, 130) == "3/5 Ready, 1 Provisioning, 1 Failed, 2m10s elapsed"
    assert summary([]) == "0/0 Ready"
    assert [format_elapsed(s) for s in (0, 59.9, 60, 3725)] == ["0s", "59s", "1m00s", "1h02m"]
