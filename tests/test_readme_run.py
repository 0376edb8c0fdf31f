"""The README's `run` example, run as written on a fresh sandbox (two real processes, a bare remote on disk).

Only the listen port is replaced by a free one. Without `--no-leader-election` the same daemon finds no namespace for
its Lease: it must say so at error level and on /readyz, with what to do.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import HTTPError, URLError

import pytest

from tests.fixtures_cluster import wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- run-on-sandbox"


def readme_example() -> tuple[str, list[str]]:
    """(terminal 1's command, terminal 2's commands) of the README block after the run-on-sandbox marker."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index(MARKER):].split("```sh\n", 1)[1].split("```", 1)[0]
    terminals: dict[str, list[str]] = {}
    current = ""
    for line in block.splitlines():
        if line.startswith("# terminal"):
            current = line.split(":", 1)[0]
            terminals[current] = []
        elif line.strip() and not line.startswith("#"):
            terminals[current].append(line)
    (first,) = terminals["# terminal 1"]
    return first, terminals["# terminal 2"]


@dataclass
class Proc:
    """A process started here (its own session, so its children stop with it), its output collected by a thread."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)


@dataclass
class Shell:
    work: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def start(self, command: str) -> Proc:
        proc = Proc(subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.work, env=self.env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True))
        self.procs.append(proc)
        return proc

    def run(self, commands: list[str]) -> None:
        done = subprocess.run(["bash", "-e", "-c", "\n".join(commands)], cwd=self.work, env=self.env, text=True,
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr


@contextmanager
def new_shell(tmp: Path) -> Iterator[Shell]:
    """A reader's terminal: the installed entry point on PATH, a fresh HOME, no GITOPS_KAITO_*/KUBE* variables; every
    process it started is stopped at the end."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "gitops-kaito"  # the installed entry point, as `pip install -e .` makes it
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gitops_kaito "$@"\n')
    shim.chmod(0o755)
    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITOPS_KAITO_", "KUBE"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}", HOME=str(tmp / "home"),
               PYTHONPATH=os.environ.get("PYTHONPATH") or str(REPO_ROOT), GIT_AUTHOR_NAME="reader",
               GIT_AUTHOR_EMAIL="reader@example.com", GIT_COMMITTER_NAME="reader",
               GIT_COMMITTER_EMAIL="reader@example.com")
    sh = Shell(work, env)
    try:
        yield sh
    finally:
        for proc in reversed(sh.procs):
            proc.stop()


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    with new_shell(tmp_path) as sh:
        yield sh


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except HTTPError as err:
        return int(err.code), err.read().decode()
    except (URLError, ConnectionError):
        return 0, ""


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Shell, str]]:
    """Terminal 1, then terminal 2 up to its `run` (returned, not started): one sandbox for the module's daemons."""
    first, second = readme_example()
    with new_shell(tmp_path_factory.mktemp("readme")) as sh:
        sandbox = sh.start(first)
        wait_until(lambda: "press Ctrl-C" in sandbox.text, timeout=60, what=f"the sandbox to start:\n{sandbox.text}")
        *setup, run = second
        assert run.startswith("gitops-kaito run "), run
        sh.run(setup)
        yield sh, run


@contextmanager
def daemon_of(example: tuple[Shell, str], keep_flags: bool = True) -> Iterator[tuple[Proc, int]]:
    """Terminal 2's `run` on a free port (without --no-leader-election unless keep_flags), stopped at the end."""
    sh, run = example
    port = free_port()
    run = run.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    if not keep_flags:
        run = run.replace(" --no-leader-election", "")
    proc = sh.start(run)
    try:
        yield proc, port
    finally:
        proc.stop()


@pytest.mark.cluster
def test_the_readme_run_example_works_on_a_fresh_sandbox(example: tuple[Shell, str]) -> None:
    with daemon_of(example) as (daemon, port):
        _, body = wait_until(lambda: (r := readyz(port))[0] == 200 and r, timeout=90,
                                  what=f"/readyz 200 (daemon output:\n{daemon.text})")
        assert body.startswith("last successful pass"), body
        # Routine lines show without -v, at info; nothing is a problem here.
        # (the line reaches the pipe a moment after /readyz turns 200)
        wait_until(lambda: [line for line in daemon.lines if re.search(r"\binfo\s+pass ok: ", line)], timeout=10,
                   what=f"a 'pass ok' line:\n{daemon.text}")
        assert not [line for line in daemon.lines if re.search(r"\b(error|warning)\s", line)], daemon.text


@pytest.mark.cluster
def test_without_a_lease_namespace_the_daemon_says_why_it_cannot_act(example: tuple[Shell, str]) -> None:
    with daemon_of(example, keep_flags=False) as (daemon, port):
        _, body = wait_until(lambda: (r := readyz(port))[0] == 503 and "cannot act" in r[1] and r, timeout=60,
                                  what=f"/readyz to say why (daemon output:\n{daemon.text})")
        for fix in ("namespace 'gitops-kaito' does not exist", "kubectl create namespace gitops-kaito",
                    "--lease-namespace", "--no-leader-election"):
            assert fix in body, body
        errors = wait_until(lambda: [line for line in daemon.lines
                                     if re.search(r"\berror\s+leader election: ", line)],
                            timeout=30, what=f"an error line (daemon output:\n{daemon.text})")
        assert "kubectl create namespace gitops-kaito" in errors[0]
        assert len(errors) == 1, errors  # a bounded rate: not one line per 2 s retry
        assert not [line for line in daemon.lines if "pass ok" in line], "a replica without the Lease acted"
