"""Git over ssh end to end: a real sshd on loopback (tests/sshfixtures.py) in front of the bare remotes of
tests/gitfixtures.py; clone/fetch, status write-back and the settings/CLI paths, and every refusal (host key, user key,
key permissions) as a GitSourceError that never prompts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import git
import pytest
import yaml
from kubernetes import client

from gitops_kaito.adapters.gitsource import (
    GitAuth,
    GitSource,
    GitSourceError,
    SourceSpec,
    git_env,
    is_ssh_url,
    ssh_command,
)
from gitops_kaito.adapters.kube import ApiRetry, Kube
from gitops_kaito.cli import build_parser, main
from gitops_kaito.cli.run import settings_from_args
from gitops_kaito.reconcile.gitsync import GitSyncSettings, run_git_pass
from gitops_kaito.service import service
from gitops_kaito.service.settings import resolve_settings
from tests.fixtures_cluster import ClusterTarget, wait_until
from tests.gitfixtures import Developer, Remote, model_file
from tests.sshfixtures import SshServer, keygen, known_hosts_line

NO_HANG_S = 30.0  # a refusal must come back well inside GitSource's 60 s timeout: nothing waits for a prompt


def auth_for(server: SshServer) -> GitAuth:
    return GitAuth(ssh_key=server.user_key, known_hosts=server.known_hosts)


def logins(server: SshServer) -> int:
    return server.log_text().count(f"Accepted publickey for {server.user} ")


def connections(server: SshServer) -> int:
    return server.log_text().count("Connection from 127.0.0.1")


def state(path: Path) -> tuple[str, str, list[str]]:
    """A clone's HEAD, origin/main and tracked files: what a refused fetch must leave as it was."""
    repo = git.Repo(path)
    return (repo.git.rev_parse("HEAD"), repo.git.rev_parse("refs/remotes/origin/main"),
            sorted(repo.git.ls_files().splitlines()))


# -- fetch ------------------------------------------------------------------------------------------------------

def test_clone_and_fetch_over_ssh_follow_the_branch(ssh_server: SshServer, remote: Remote, dev: Developer,
                                                    tmp_path: Path) -> None:
    # A filter-capable remote, as hosted git servers are: the clone is partial and its blobs come lazily over ssh.
    git.Repo(remote.bare).git.config("uploadpack.allowFilter", "true")
    url = ssh_server.url(remote.bare)
    before = logins(ssh_server)
    src = GitSource(SourceSpec(url, auth=auth_for(ssh_server)), tmp_path / "cache")
    first = src.fetch()
    assert first.sha == remote.sha() and first.revision == f"main@sha1:{remote.sha()}"
    assert (first.path / "models/ml/a.yaml").read_text() == "a: 1\n"
    assert logins(ssh_server) > before  # it really went through sshd with the user key
    cache = git.Repo(first.path)
    assert cache.git.config("remote.origin.url") == url and cache.git.config("remote.origin.promisor") == "true"
    assert str(ssh_server.user_key) not in (first.path / ".git" / "config").read_text()  # the key stays in env

    dev.write("models/ml/b.yaml", "b: 2\n")
    pushed = dev.commit("add b")
    second = src.fetch()
    assert (second.sha, second.previous_sha, second.changed) == (pushed, first.sha, True)
    assert (second.path / "models/ml/b.yaml").read_text() == "b: 2\n"
    assert src.ls_remote_branch("main") == pushed
    assert src.fetch_branch("no-such-branch") is None
    assert src.fetch().changed is False


@pytest.mark.parametrize("form", ["git+ssh", "scp-like"])
def test_other_ssh_url_forms_get_the_key(form: str, ssh_server: SshServer, remote: Remote, dev: Developer,
                                         tmp_path: Path) -> None:
    """git+ssh:// and the scp-like form [user@host:port]:path are ssh to git: they must carry the key too."""
    where = f"{ssh_server.user}@{ssh_server.host}:{ssh_server.port}"
    url = f"git+ssh://{where}{remote.bare}" if form == "git+ssh" else f"[{where}]:{remote.bare}"
    checkout = GitSource(SourceSpec(url, auth=auth_for(ssh_server)), tmp_path / "cache").fetch()
    assert checkout.sha == remote.sha()


def test_ssh_url_detection_and_command() -> None:
    for url in ("ssh://git@h/o/r.git", "git+ssh://h/r", "SSH+GIT://h/r", "git@github.com:o/r.git",
                "github.com:o/r.git", "[git@h:2222]:o/r.git", "host:r"):
        assert is_ssh_url(url), url
    for url in ("https://h/o/r.git", "file:///srv/r.git", "/srv/a:b", "./a:b", "r.git", "git://h/r"):
        assert not is_ssh_url(url), url
        assert "GIT_SSH_COMMAND" not in git_env(url, GitAuth(ssh_key=Path("/k/id")))
    keyed = ssh_command(GitAuth(ssh_key=Path("/k/id"), known_hosts=Path("/k/known hosts")))
    # An explicit key: no ~/.ssh/config, no agent, and the given known_hosts is the only trust.
    assert keyed.startswith("ssh -F /dev/null -o IdentityAgent=none ")
    assert "'UserKnownHostsFile=\"/k/known hosts\"' -o GlobalKnownHostsFile=/dev/null" in keyed
    bare = ssh_command(GitAuth())  # no key: the user's own ssh setup (a developer's `sync --git-url git@...`)
    assert bare == "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes"


def test_key_and_known_hosts_paths_with_spaces(ssh_server: SshServer, remote: Remote, dev: Developer,
                                               tmp_path: Path) -> None:
    secrets = tmp_path / "my secrets"
    secrets.mkdir()
    key = secrets / "id ed25519"
    shutil.copy2(ssh_server.user_key, key)
    known = secrets / "known hosts"
    shutil.copy2(ssh_server.known_hosts, known)
    checkout = GitSource(SourceSpec(ssh_server.url(remote.bare), auth=GitAuth(ssh_key=key, known_hosts=known)),
                         tmp_path / "cache").fetch()
    assert checkout.sha == remote.sha()


# -- refusals ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("known", ["other-host-only", "changed-key", "empty"])
def test_an_unknown_host_key_is_refused_and_the_cache_is_untouched(
        known: str, ssh_server: SshServer, remote: Remote, dev: Developer, tmp_path: Path) -> None:
    url, cache = ssh_server.url(remote.bare), tmp_path / "cache"
    good = GitSource(SourceSpec(url, auth=auth_for(ssh_server)), cache).fetch()
    dev.write("models/ml/b.yaml", "b: 2\n")
    dev.commit("add b")  # something new to fetch: a refused fetch must not bring it in
    before = state(good.path)

    other = keygen(tmp_path / "other_host_key", "another host").with_suffix(".pub").read_text().split()[:2]
    bad = tmp_path / "known_hosts"
    bad.write_text({
        "other-host-only": known_hosts_line("127.0.0.2", ssh_server.port, ssh_server.host_pubkey),
        "changed-key": known_hosts_line("127.0.0.1", ssh_server.port, " ".join(other)),
        "empty": "",
    }[known])
    accepted = logins(ssh_server)
    started = time.monotonic()
    with pytest.raises(GitSourceError, match="Host key verification failed") as err:
        GitSource(SourceSpec(url, auth=GitAuth(ssh_key=ssh_server.user_key, known_hosts=bad)), cache).fetch()
    assert time.monotonic() - started < NO_HANG_S
    assert str(err.value).startswith("git fetch failed contacting ssh://")
    if known == "changed-key":
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in str(err.value)
    assert state(good.path) == before and before[0] == good.sha
    assert logins(ssh_server) == accepted  # the client stopped before it offered the key


@pytest.fixture
def agent_sock(tmp_path: Path) -> Iterator[str]:
    """A private ssh-agent (foreground, its socket in tmp); yields the socket's path."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("ssh-agent/ssh-add are absent: cannot show that an agent's keys are not offered")
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: sock.exists() or proc.poll() is not None, timeout=10, what="ssh-agent's socket")
        assert proc.poll() is None, "ssh-agent exited"
        yield str(sock)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_key_not_in_authorized_keys_is_refused(ssh_server: SshServer, remote: Remote, dev: Developer,
                                                 tmp_path: Path, agent_sock: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The right key sits in an ssh-agent the process could reach: only the configured key may be offered.
    subprocess.run(["ssh-add", "-q", str(ssh_server.user_key)], env={**os.environ, "SSH_AUTH_SOCK": agent_sock},
                   check=True, capture_output=True, timeout=30)
    monkeypatch.setenv("SSH_AUTH_SOCK", agent_sock)
    wrong = keygen(tmp_path / "wrong_key", "not authorized")
    cache = tmp_path / "cache"
    started = time.monotonic()
    with pytest.raises(GitSourceError, match=r"Permission denied \(publickey\)") as err:
        GitSource(SourceSpec(ssh_server.url(remote.bare), auth=GitAuth(ssh_key=wrong,
                                                                      known_hosts=ssh_server.known_hosts)),
                  cache).fetch()
    assert time.monotonic() - started < NO_HANG_S
    assert str(err.value).startswith("git fetch failed contacting ssh://")
    assert not git.Repo(next(cache.iterdir())).head.is_valid()  # nothing was fetched


def test_a_key_open_to_others_is_a_clear_error_before_ssh_runs(ssh_server: SshServer, remote: Remote,
                                                               dev: Developer, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"  # our own file: ssh checks the modes of keys its user owns
    shutil.copy2(ssh_server.user_key, key)
    key.chmod(0o644)
    spec = SourceSpec(ssh_server.url(remote.bare), auth=GitAuth(ssh_key=key, known_hosts=ssh_server.known_hosts))
    seen = connections(ssh_server)
    with pytest.raises(GitSourceError, match=r"ssh key file .* is readable by group or others \(mode 0644\).*"
                                             r"chmod 600"):
        GitSource(spec, tmp_path / "cache").fetch()
    assert connections(ssh_server) == seen  # said before ssh ran: no connection was made
    key.chmod(0o600)
    assert GitSource(spec, tmp_path / "cache").fetch().sha == remote.sha()


def test_a_missing_known_hosts_file_is_named(ssh_server: SshServer, remote: Remote, dev: Developer,
                                             tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "known_hosts"
    spec = SourceSpec(ssh_server.url(remote.bare), auth=GitAuth(ssh_key=ssh_server.user_key, known_hosts=missing))
    with pytest.raises(GitSourceError, match=f"known_hosts file {missing} does not exist"):
        GitSource(spec, tmp_path / "cache").fetch()


# -- settings and CLI -------------------------------------------------------------------------------------------

def test_run_settings_from_env_and_flags_fetch_over_ssh(ssh_server: SshServer, remote: Remote, dev: Developer,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"GITOPS_KAITO_GIT_URL": ssh_server.url(remote.bare), "GITOPS_KAITO_CACHE_DIR": str(tmp_path / "cache"),
           "GITOPS_KAITO_SSH_KEY_FILE": str(ssh_server.user_key),
           "GITOPS_KAITO_KNOWN_HOSTS_FILE": str(ssh_server.known_hosts)}
    settings = service.git_settings(resolve_settings({}, env=env))
    assert settings.auth == auth_for(ssh_server)
    assert GitSource(SourceSpec(settings.url, branch=settings.branch, auth=settings.auth),
                     settings.cache_dir).fetch().sha == remote.sha()

    # `run`'s flags win over the environment: a wrong key in env, the right one by flag.
    monkeypatch.setenv("GITOPS_KAITO_SSH_KEY_FILE", str(keygen(tmp_path / "wrong", "wrong")))
    monkeypatch.setenv("GITOPS_KAITO_KNOWN_HOSTS_FILE", str(tmp_path / "absent"))
    args = build_parser().parse_args(["run", "--git-url", ssh_server.url(remote.bare),
                                      "--cache-dir", str(tmp_path / "cache2"),
                                      "--ssh-key-file", str(ssh_server.user_key),
                                      "--known-hosts-file", str(ssh_server.known_hosts)])
    flagged = service.git_settings(settings_from_args(args))
    assert flagged.auth == auth_for(ssh_server)
    assert GitSource(SourceSpec(flagged.url, auth=flagged.auth), flagged.cache_dir).fetch().sha == remote.sha()


# -- a full pass: apply, then status pushed back over ssh -------------------------------------------------------

@pytest.fixture
def kube(cluster: ClusterTarget) -> Iterator[Kube]:
    k = Kube.connect(cluster.kubeconfig, context=cluster.context,
                     retry=ApiRetry(base_delay_s=0.01, max_delay_s=0.05))
    try:
        yield k
    finally:
        k.close()


def workspace_exists(cluster: ClusterTarget, name: str) -> bool:
    with cluster.api_client() as api:
        try:
            client.CustomObjectsApi(api).get_namespaced_custom_object(
                "kaito.sh", "v1beta1", cluster.namespace, "workspaces", name)
        except client.ApiException as err:
            if err.status == 404:
                return False
            raise
    return True


@pytest.mark.cluster
def test_git_pass_applies_and_pushes_status_over_ssh(ssh_server: SshServer, cluster: ClusterTarget, kube: Kube,
                                                     remote: Remote, tmp_path: Path) -> None:
    dev = Developer(remote, tmp_path / "dev")
    dev.write(f"models/{cluster.namespace}/phi.yaml", model_file("phi", namespace=cluster.namespace))
    added = dev.commit("add phi")
    settings = GitSyncSettings(url=ssh_server.url(remote.bare), cache_dir=tmp_path / "cache",
                               auth=auth_for(ssh_server))
    first = run_git_pass(settings, kube)
    assert first.revision == f"main@sha1:{added}" and first.sync.created >= 1
    assert workspace_exists(cluster, "phi")
    assert first.writeback is not None and first.writeback.committed
    assert remote.sha() == first.writeback.sha  # the status commit landed on the bare remote, through sshd
    tip = git.Repo(remote.bare).commit("main")
    assert tip.author.name == "gitops-kaito" and f"Gitops-Kaito-Revision: {first.revision}" in tip.message
    doc = yaml.safe_load(remote.show(f"status/{cluster.namespace}/phi.yaml"))
    assert doc["revision"] == first.revision and doc["state"] in ("Pending", "Provisioning", "Ready")

    if cluster.kind == "real":
        return  # a real KAITO takes minutes to serve a model; the sandbox's simulated one takes seconds
    def pushed_ready() -> bool:
        run_git_pass(settings, kube)
        return bool(yaml.safe_load(remote.show(f"status/{cluster.namespace}/phi.yaml"))["state"] == "Ready")

    wait_until(pushed_ready, timeout=60, interval=0.1, what="status Ready pushed over ssh")
    assert git.Repo(remote.bare).commit("main").author.name == "gitops-kaito"


@pytest.mark.cluster
def test_cli_sync_git_url_over_ssh_takes_the_key_from_env(ssh_server: SshServer, cluster: ClusterTarget,
                                                          remote: Remote, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    dev = Developer(remote, tmp_path / "dev")
    dev.write(f"models/{cluster.namespace}/phi.yaml", model_file("phi", namespace=cluster.namespace))
    added = dev.commit("add phi")
    monkeypatch.setenv("GITOPS_KAITO_SSH_KEY_FILE", str(ssh_server.user_key))
    monkeypatch.setenv("GITOPS_KAITO_KNOWN_HOSTS_FILE", str(ssh_server.known_hosts))
    code = main(["sync", "--git-url", ssh_server.url(remote.bare), "--cache-dir", str(tmp_path / "cache"),
                 *cluster.cli_args(), "-o", "json"])
    captured = capsys.readouterr()
    assert code in (0, 1), captured
    assert json.loads(captured.out)["revision"] == f"main@sha1:{added}"
    assert f"status: committed {remote.sha()[:12]} to main" in captured.err
    assert "phi" in remote.show("status/STATUS.md")


def test_relative_key_and_known_hosts_paths_are_taken_from_where_we_run(
        ssh_server: SshServer, remote: Remote, dev: Developer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--ssh-key-file id_ed25519` means the file here, not in the cache clone that git (and so ssh) runs in."""
    here = tmp_path / "here"
    here.mkdir()
    shutil.copy2(ssh_server.user_key, here / "id_ed25519")
    shutil.copy2(ssh_server.known_hosts, here / "known_hosts")
    monkeypatch.chdir(here)
    auth = GitAuth(ssh_key=Path("id_ed25519"), known_hosts=Path("known_hosts"))
    src = GitSource(SourceSpec(ssh_server.url(remote.bare), auth=auth), tmp_path / "cache")
    assert src.fetch().sha == remote.sha()
    dev.write("models/ml/b.yaml", "b: 2\n")
    pushed = dev.commit("add b")
    monkeypatch.chdir(tmp_path)  # the daemon may run elsewhere later: the paths were fixed when it started
    assert src.fetch().sha == pushed


def test_a_quote_in_the_known_hosts_path(ssh_server: SshServer, remote: Remote, dev: Developer,
                                         tmp_path: Path) -> None:
    """ssh reads an -o value as words with ' and " quoting: a lone ' was "invalid quotes" before any connection."""
    secrets = tmp_path / "o'brien"
    secrets.mkdir()
    key, known = secrets / "id_ed25519", secrets / "known_hosts"
    shutil.copy2(ssh_server.user_key, key)
    shutil.copy2(ssh_server.known_hosts, known)
    checkout = GitSource(SourceSpec(ssh_server.url(remote.bare), auth=GitAuth(ssh_key=key, known_hosts=known)),
                         tmp_path / "cache").fetch()
    assert checkout.sha == remote.sha()


def test_a_key_path_starting_with_a_tilde_is_the_users_home(ssh_server: SshServer, remote: Remote,
                                                            dev: Developer, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """GITOPS_KAITO_SSH_KEY_FILE=~/.ssh/id_ed25519 (no shell expanded it): ssh's own reading, not <cwd>/~/..."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy2(ssh_server.user_key, home / ".ssh" / "id_ed25519")
    shutil.copy2(ssh_server.known_hosts, home / ".ssh" / "known_hosts")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    auth = GitAuth(ssh_key=Path("~/.ssh/id_ed25519"), known_hosts=Path("~/.ssh/known_hosts"))
    assert GitSource(SourceSpec(ssh_server.url(remote.bare), auth=auth), tmp_path / "cache").fetch().sha == remote.sha()
