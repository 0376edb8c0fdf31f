"""Nothing leaked: a token or password written into a Git URL never appears in stdout, stderr, logs, error
messages, status files, commits or the clone's .git/config, over https and ssh, on success and on every failure.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops_kaito.adapters.gitsource import redact_url, scrub, split_credentials
from gitops_kaito.cli import main
from gitops_kaito.core.status import scrub as status_scrub
from gitops_kaito.service.settings import resolve_settings
from tests.faultkit import GitHttpServer, GitWorld
from tests.sshfixtures import SshServer, ssh_server  # noqa: F401 - the module-scoped sshd fixture

CHECKOUT = Path(__file__).resolve().parent.parent  # the code these tests belong to, also in the subprocess
TOKEN = "tok-" + "s3cr3tVALUE" * 3
PASSWORD = "pw-Hunter2-" + "x9" * 6


@pytest.mark.parametrize("url", [
    f"https://x-access-token:{TOKEN}@github.com/org/models.git",
    f"https://{TOKEN}@github.com/org/models.git",
    f"http://oauth2:{TOKEN}@gitlab.local:8080/org/models.git",
    f"ssh://git:{PASSWORD}@github.com/org/models.git",
    f"ssh://git:{PASSWORD}@[::1]:2222/org/models.git",
    f"git+ssh://git:{PASSWORD}@host/org/models.git",
    f"git:{PASSWORD}@github.com:org/models.git",
])
def test_credentials_leave_the_url_before_anything_sees_it(url: str) -> None:
    secret = TOKEN if TOKEN in url else PASSWORD
    clean, auth = split_credentials(url)
    assert secret not in clean and auth is not None
    assert secret not in redact_url(url)
    assert secret not in scrub(f"fatal: unable to access '{url}': 403", auth.secrets())
    assert secret not in status_scrub(f"git failed contacting {url}")
    settings = resolve_settings({"git_url": url}, env={})
    assert secret not in settings.git_url and secret not in repr(settings) and secret not in str(settings.redacted())
    if TOKEN in url:
        assert settings.git_token == TOKEN, "the token still authenticates"


def _everything(tmp: Path, cache: Path, remote_bare: Path) -> str:
    """Every place a credential could land: the clone's git config and whole tree, and every object the remote
    holds (status files and commit messages included)."""
    texts = []
    for path in cache.rglob("config"):
        texts.append(path.read_text(errors="replace"))
    texts.append(subprocess.run(["git", "-C", str(remote_bare), "log", "--all", "-p", "--format=%B"],
                                capture_output=True, text=True, check=False).stdout)
    return "\n".join(texts)


def _leaks(text: str, *secrets: str) -> list[str]:
    basic = [base64.b64encode(f"{u}:{s}".encode()).decode() for s in secrets for u in ("x-access-token", "git")]
    return [s for s in (*secrets, *basic) if s in text]


@pytest.fixture
def https_world(tmp_path: Path) -> Iterator[tuple[GitWorld, GitHttpServer, str]]:
    server = GitHttpServer(tmp_path, TOKEN)
    url = server.url("models.git").replace("http://", f"http://x-access-token:{TOKEN}@")
    world = GitWorld(tmp_path)
    world.commit("add phi", phi="phi-4-mini-instruct")
    yield world, server, url
    world.close()
    server.stop()


@pytest.mark.cluster
@pytest.mark.emulator_only
def test_an_https_token_in_the_url_never_leaves_its_place(https_world: tuple[GitWorld, GitHttpServer, str],
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """`sync --git-url https://x-access-token:TOKEN@...`: a good pass (apply, status commit and push), then the
    failures (unknown branch, pushes refused, every request refused). Checks: the pass authenticates with the
    token, and the token (or its Basic form) is in no output, log record, error, status file, commit, or
    .git/config."""
    world, server, url = https_world
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache-cli"
    flags = ["--kubeconfig", str(world.kw.kubeconfig), "--cache-dir", str(cache)]
    assert main(["sync", "--git-url", url, *flags]) == 0
    assert world.kw.workspaces() == {"phi"}, "the token in the URL did not authenticate"
    outputs = [capsys.readouterr()]
    assert main(["sync", "--git-url", url, "--branch", "no-such-branch", *flags]) == 2
    outputs.append(capsys.readouterr())
    server.refuse = "push"
    world.dev.pull()  # the first pass pushed status
    world.commit("add qwen", qwen="qwen2.5-coder-7b-instruct")
    assert main(["sync", "--git-url", url, *flags]) == 2
    outputs.append(capsys.readouterr())
    server.refuse = "all"
    assert main(["sync", "--git-url", url, *flags]) == 2
    outputs.append(capsys.readouterr())
    assert main(["status", "--git-url", url]) == 2
    outputs.append(capsys.readouterr())
    seen = "\n".join(o.out + o.err for o in outputs) + "\n".join(r.getMessage() for r in caplog.records)
    assert "127.0.0.1" in seen  # the URL itself is shown, without its credentials
    assert _leaks(seen, TOKEN) == []
    assert _leaks(_everything(tmp_path, cache, world.remote.bare), TOKEN) == []


@pytest.mark.cluster
@pytest.mark.emulator_only
def test_run_prints_and_logs_the_url_without_its_token(https_world: tuple[GitWorld, GitHttpServer, str],
                                                       tmp_path: Path) -> None:
    """`run --git-url https://x-access-token:TOKEN@...` as a process: its start line shows the URL without the
    token, and nothing it writes until SIGTERM (stdout, stderr: every log line) contains the token."""
    world, _server, url = https_world
    env = {**os.environ, "GITOPS_KAITO_INTERVAL": "3600s", "GITOPS_KAITO_LEADER_ELECTION": "false",
           "GITOPS_KAITO_CACHE_DIR": str(tmp_path / "cache-run"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "gitops_kaito", "-v", "run", "--git-url", url,
                             "--listen", "127.0.0.1:0", "--kubeconfig", str(world.kw.kubeconfig)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert re.search(r"following http://127\.0\.0\.1:\d+/models\.git", first), first
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert _leaks(first + out + err, TOKEN) == [], "the token was printed or logged"


@pytest.mark.cluster
@pytest.mark.emulator_only
def test_an_ssh_password_in_the_url_never_leaves_its_place(ssh_server: SshServer,  # noqa: F811
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           caplog: pytest.LogCaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`sync --git-url ssh://user:PASSWORD@host:port/...` with a key (the password can never be used: ssh runs in
    batch mode). Checks: the pass works over ssh with the key, and the password is in no output, log, error
    (also for an unknown branch), commit or .git/config."""
    world = GitWorld(tmp_path)
    try:
        world.commit("add phi", phi="phi-4-mini-instruct")
        url = ssh_server.url(world.remote.bare).replace(f"ssh://{ssh_server.user}@",
                                                        f"ssh://{ssh_server.user}:{PASSWORD}@")
        monkeypatch.setenv("GITOPS_KAITO_SSH_KEY_FILE", str(ssh_server.user_key))
        monkeypatch.setenv("GITOPS_KAITO_KNOWN_HOSTS_FILE", str(ssh_server.known_hosts))
        caplog.set_level(logging.DEBUG)
        cache = tmp_path / "cache-ssh"
        flags = ["--kubeconfig", str(world.kw.kubeconfig), "--cache-dir", str(cache)]
        assert main(["sync", "--git-url", url, *flags]) == 0
        assert world.kw.workspaces() == {"phi"}
        first = capsys.readouterr()
        assert main(["sync", "--git-url", url, "--branch", "no-such-branch", *flags]) == 2
        second = capsys.readouterr()
        seen = first.out + first.err + second.out + second.err + "\n".join(r.getMessage() for r in caplog.records)
        assert "no-such-branch" in seen
        assert _leaks(seen, PASSWORD) == []
        assert _leaks(_everything(tmp_path, cache, world.remote.bare), PASSWORD) == []
    finally:
        world.close()
