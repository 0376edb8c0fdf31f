"""Git source: clone/fetch/pin against a real bare repository, and credentials that never leak.

https and ssh are exercised offline: env construction, a loopback server that refuses, a closed port.
"""

from __future__ import annotations

import base64
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import git
import pytest

from gitops_kaito.adapters.gitsource import (
    GitAuth,
    GitSource,
    GitSourceError,
    SourceSpec,
    format_revision,
    git_env,
    parse_revision,
    split_credentials,
)
from tests.gitfixtures import Developer, Remote

TOKEN = "ghp_s3cretT0kenValue1234567890abcdef"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_follows_branch_and_reports_revision(remote: Remote, dev: Developer, tmp_path: Path) -> None:
    src = GitSource(SourceSpec(remote.url, branch="main"), tmp_path / "cache")
    first = src.fetch()
    assert first.sha == remote.sha()
    assert first.revision == f"main@sha1:{remote.sha()}"
    assert (first.path / "models/ml/a.yaml").read_text() == "a: 1\n"
    assert first.changed

    again = src.fetch()
    assert again.sha == first.sha and not again.changed

    dev.write("models/ml/b.yaml", "b: 2\n")
    new = dev.commit("add b")
    third = src.fetch()
    assert third.sha == new and third.previous_sha == first.sha and third.changed
    assert (third.path / "models/ml/b.yaml").is_file()


def test_cache_survives_a_new_process(remote: Remote, dev: Developer, tmp_path: Path) -> None:
    GitSource(SourceSpec(remote.url), tmp_path / "cache").fetch()
    second = GitSource(SourceSpec(remote.url), tmp_path / "cache").fetch()
    assert second.previous_sha == second.sha  # reused the clone rather than starting over


def test_pins_tag_and_follows_a_moved_tag(remote: Remote, dev: Developer, tmp_path: Path) -> None:
    dev.repo.git.tag("v1")
    dev.repo.git.push("-q", "origin", "v1")
    tagged = dev.repo.head.commit.hexsha
    dev.write("models/ml/b.yaml", "b: 2\n")
    later = dev.commit("add b")
    src = GitSource(SourceSpec(remote.url, tag="v1"), tmp_path / "cache")
    co = src.fetch()
    assert co.sha == tagged and co.revision == f"v1@sha1:{tagged}"
    assert not (co.path / "models/ml/b.yaml").exists()
    dev.repo.git.tag("-f", "v1", later)
    dev.repo.git.push("-q", "--force", "origin", "v1")
    assert src.fetch().sha == later


def test_pins_a_commit(remote: Remote, dev: Developer, tmp_path: Path) -> None:
    old = dev.repo.head.commit.hexsha
    dev.write("models/ml/b.yaml", "b: 2\n")
    dev.commit("add b")
    co = GitSource(SourceSpec(remote.url, commit=old), tmp_path / "cache").fetch()
    assert co.sha == old and co.revision == f"sha1:{old}"
    assert not (co.path / "models/ml/b.yaml").exists()
    with pytest.raises(GitSourceError, match="not found"):
        GitSource(SourceSpec(remote.url, commit="0" * 40), tmp_path / "cache2").fetch()


def test_force_pushed_remote_is_followed(remote: Remote, dev: Developer, tmp_path: Path) -> None:
    src = GitSource(SourceSpec(remote.url), tmp_path / "cache")
    before = src.fetch().sha
    dev.write("models/ml/a.yaml", "a: rewritten\n")
    with dev.repo.git.custom_environment(GIT_AUTHOR_NAME="D", GIT_AUTHOR_EMAIL="d@x", GIT_COMMITTER_NAME="D",
                                         GIT_COMMITTER_EMAIL="d@x"):
        dev.repo.git.commit("-q", "--amend", "-m", "rewritten")
    dev.repo.git.push("-q", "--force", "origin", "HEAD:main")
    after = src.fetch()
    assert after.sha == remote.sha() != before
    assert (after.path / "models/ml/a.yaml").read_text() == "a: rewritten\n"


def test_unreachable_remote_leaves_last_checkout(remote: Remote, dev: Developer, tmp_path: Path) -> None:
    src = GitSource(SourceSpec(remote.url), tmp_path / "cache")
    good = src.fetch()
    remote.bare.rename(tmp_path / "gone.git")
    with pytest.raises(GitSourceError) as err:
        src.fetch()
    assert "git fetch failed" in str(err.value)
    assert git.Repo(good.path).head.commit.hexsha == good.sha
    assert (good.path / "models/ml/a.yaml").read_text() == "a: 1\n"


def test_missing_branch_is_a_clear_error(remote: Remote, dev: Developer, tmp_path: Path) -> None:
    with pytest.raises(GitSourceError, match="branch 'nope' not found"):
        GitSource(SourceSpec(remote.url, branch="nope"), tmp_path / "cache").fetch()


@pytest.mark.parametrize("damage", ["head", "objects"])
def test_corrupted_cache_is_recloned(remote: Remote, dev: Developer, tmp_path: Path, damage: str) -> None:
    src = GitSource(SourceSpec(remote.url), tmp_path / "cache")
    path = src.fetch().path
    if damage == "head":
        (path / ".git" / "HEAD").write_text("garbage\n")
    else:
        shutil.rmtree(path / ".git" / "objects")
        (path / ".git" / "objects").mkdir()
    co = GitSource(SourceSpec(remote.url), tmp_path / "cache").fetch()
    assert co.sha == remote.sha()
    assert (co.path / "models/ml/a.yaml").read_text() == "a: 1\n"


class _Refuse401(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        _Refuse401.seen.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    _Refuse401.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Refuse401)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/org/models.git"
    srv.shutdown()
    srv.server_close()


def test_token_is_sent_as_header_and_never_stored(refusing_server: str, tmp_path: Path) -> None:
    src = GitSource(SourceSpec(refusing_server, auth=GitAuth(token=TOKEN)), tmp_path / "cache")
    with pytest.raises(GitSourceError) as err:
        src.fetch()
    expected = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert expected in _Refuse401.seen  # the credential did reach the server, as a header
    assert TOKEN not in str(err.value)
    assert expected.split()[1] not in str(err.value)
    config = (src.path / ".git" / "config").read_text()
    assert TOKEN not in config and "extraHeader" not in config
    assert TOKEN not in repr(src.auth) and TOKEN not in repr(src.spec)


def test_token_in_url_is_moved_out_of_config(refusing_server: str, tmp_path: Path) -> None:
    url = refusing_server.replace("http://", f"http://bot:{TOKEN}@")
    src = GitSource(SourceSpec(url), tmp_path / "cache")
    with pytest.raises(GitSourceError) as err:
        src.fetch()
    assert TOKEN not in str(err.value)
    assert TOKEN not in (src.path / ".git" / "config").read_text()
    assert any(h.startswith("Basic ") for h in _Refuse401.seen)


def test_refused_https_connection_is_a_git_source_error(tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{closed_port()}/org/models.git"
    with pytest.raises(GitSourceError, match=r"127\.0\.0\.1") as err:
        GitSource(SourceSpec(url, auth=GitAuth(token=TOKEN)), tmp_path / "cache").fetch()
    assert TOKEN not in str(err.value)


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client on this machine")
def test_refused_ssh_connection_is_a_git_source_error(tmp_path: Path) -> None:
    url = f"ssh://git@127.0.0.1:{closed_port()}/org/models.git"
    with pytest.raises(GitSourceError, match="git fetch failed"):
        GitSource(SourceSpec(url, auth=GitAuth(ssh_key=tmp_path / "id")), tmp_path / "cache").fetch()


def test_env_construction() -> None:
    https = git_env("https://github.com/o/r.git", GitAuth(token=TOKEN, username="bot"))
    assert https["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert https["GIT_CONFIG_VALUE_0"] == "Authorization: Basic " + base64.b64encode(f"bot:{TOKEN}".encode()).decode()
    assert https["GIT_TERMINAL_PROMPT"] == "0" and "GIT_SSH_COMMAND" not in https
    ssh = git_env("git@github.com:o/r.git", GitAuth(ssh_key=Path("/k/id ed"), known_hosts=Path("/k/known_hosts")))
    cmd = ssh["GIT_SSH_COMMAND"]
    assert "-i '/k/id ed'" in cmd and "UserKnownHostsFile=/k/known_hosts" in cmd
    assert "BatchMode=yes" in cmd and "StrictHostKeyChecking=yes" in cmd
    assert "GIT_CONFIG_COUNT" not in ssh
    assert "GIT_SSH_COMMAND" in git_env("ssh://git@h/o/r.git", GitAuth())
    assert "GIT_CONFIG_COUNT" not in git_env("file:///tmp/r.git", GitAuth(token=TOKEN))


def test_url_and_revision_helpers() -> None:
    url, auth = split_credentials(f"https://bot:{TOKEN}@example.com/o/r.git")
    assert url == "https://example.com/o/r.git" and auth is not None and auth.token == TOKEN
    assert auth.username == "bot"
    assert split_credentials("https://example.com/o/r.git") == ("https://example.com/o/r.git", None)
    assert format_revision("main", "ab" * 20) == "main@sha1:" + "ab" * 20
    assert parse_revision("main@sha1:abc") == ("main", "abc")
    assert parse_revision("sha1:abc") == ("", "abc")
