"""A real OpenSSH server on 127.0.0.1 for git over ssh: fresh host and user keys, known_hosts, in a tmp dir.

`ssh_server` (one per test module) runs `/usr/sbin/sshd -D -e` in the foreground; tests skip when sshd is absent.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # sshd running as root refuses to start without its privilege separation dir
START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    user: str
    user_key: Path      # private key whose public half is in authorized_keys (mode 0600)
    known_hosts: Path   # "[127.0.0.1]:PORT ssh-ed25519 ..." for this server's host key
    host_pubkey: str    # "ssh-ed25519 AAAA..."
    log: Path           # sshd's own log (-e): why a login was refused

    def url(self, path: Path) -> str:
        """ssh://user@127.0.0.1:PORT/<absolute path>: git runs git-upload-pack/receive-pack on that path."""
        return f"ssh://{self.user}@{self.host}:{self.port}{path.resolve()}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def keygen(path: Path, comment: str) -> Path:
    """A fresh passphrase-less ed25519 key pair at `path` / `path`.pub."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path


def known_hosts_line(host: str, port: int, pubkey: str) -> str:
    return f"[{host}]:{port} {pubkey}\n"


def _missing_tools() -> str | None:
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is absent (apt-get install openssh-server): git over ssh cannot be tested"
    for tool in ("ssh", "ssh-keygen", "ssh-keyscan"):
        if shutil.which(tool) is None:
            return f"{tool} is absent (apt-get install openssh-client): git over ssh cannot be tested"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quoted(path: Path) -> str:
    return '"' + str(path) + '"'


def _write_config(where: Path, port: int, host_key: Path, authorized: Path, user: str) -> Path:
    config = where / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {_quoted(host_key)}",
        f"PidFile {_quoted(where / 'sshd.pid')}",
        f"AuthorizedKeysFile {_quoted(authorized)}",
        "StrictModes no",             # the tmp dir's modes are pytest's, not a home directory's
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",  # CI runs as root
        f"AllowUsers {user}",
        "UsePAM no",                  # PAM session modules (pam_loginuid) fail in containers; keys need no PAM
        "UseDNS no",
        "AcceptEnv GIT_PROTOCOL",     # as git servers do: protocol v2 over ssh
        "LogLevel VERBOSE",
        "",
    ]))
    return config


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> str:
    """Poll a TCP connect until sshd listens, then read its host key with ssh-keyscan; fail if sshd exits."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.02)  # a poll interval, not synchronisation: the loop waits on the connect above
    else:
        raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S}s: "
                           f"{log.read_text(errors='replace')}")
    scan = subprocess.run(["ssh-keyscan", "-T", "5", "-t", "ed25519", "-p", str(port), "127.0.0.1"],
                          capture_output=True, text=True, timeout=30)
    keys = [ln for ln in scan.stdout.splitlines() if ln and not ln.startswith("#")]
    if not keys:
        raise RuntimeError(f"ssh-keyscan got no host key from 127.0.0.1:{port}: {scan.stderr}")
    return " ".join(keys[0].split()[1:3])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """sshd on 127.0.0.1:<free port> that lets the current user in with a generated key, and nobody else."""
    missing = _missing_tools()
    if missing:
        pytest.skip(missing)
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    where = tmp_path_factory.mktemp("sshd")
    user = pwd.getpwuid(os.getuid()).pw_name
    host_key = keygen(where / "ssh_host_ed25519_key", "gitops-kaito-test-host")
    user_key = keygen(where / "id_ed25519", "gitops-kaito-test-user")
    authorized = where / "authorized_keys"
    authorized.write_text(user_key.with_suffix(".pub").read_text())
    host_pubkey = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])
    log = where / "sshd.log"
    proc: subprocess.Popen[bytes] | None = None
    for attempt in range(3):  # the free port may be taken between the probe and sshd's bind
        port = _free_port()
        config = _write_config(where, port, host_key, authorized, user)
        with log.open("ab") as out:
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            scanned = _wait_ready(proc, port, log)
            break
        except RuntimeError:
            _stop(proc)
            if attempt == 2:
                raise
    assert proc is not None
    try:
        assert scanned == host_pubkey, f"sshd on port {port} answered with another host key: {scanned}"
        known_hosts = where / "known_hosts"
        known_hosts.write_text(known_hosts_line("127.0.0.1", port, host_pubkey))
        server = SshServer("127.0.0.1", port, user, user_key, known_hosts, host_pubkey, log)
        _check_login(server)
        yield server
    finally:
        _stop(proc)


def _check_login(server: SshServer) -> None:
    """One login with the user key, so a broken server fails here with its log, not in every test."""
    probe = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes",
         "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "-i", str(server.user_key), "-p", str(server.port), f"{server.user}@{server.host}", "git --version"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if probe.returncode == 0 and probe.stdout.startswith("git version"):
        return
    log = server.log_text()
    if "account is locked" in log:
        pytest.skip(f"sshd refuses {server.user}: the account's password is locked ('!' in /etc/shadow) and the "
                    f"test server runs without PAM")
    raise RuntimeError(f"cannot log in to the test sshd as {server.user} (exit {probe.returncode}: "
                       f"{probe.stderr.strip()}); sshd log:\n{log}")
