"""Follows a Git repository: clone/fetch into a cache dir, pin one commit per pass, check it out.

Credentials travel only through the environment of each git call (never .git/config, argv or logs).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import git

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
BLOB_CACHE_BYTES = 16 * 1024 * 1024  # read_blobs keeps up to this much text (5,000 status files: ~4 MB)
# Git's words for "the remote refused this push because it moved on" (non-fast-forward, stale info).
_REJECTED_RE = re.compile(
    r"\[rejected\]|non-fast-forward|fetch first|Updates were rejected because|stale info"
    r"|\[remote rejected\].*(?:lock|stale|cannot lock ref)")


class GitSourceError(Exception):
    """A git operation failed; the message is safe to show and log (credentials scrubbed)."""


class PushRejected(GitSourceError):
    """The remote refused a push because its branch moved on (not an auth or network failure)."""


@dataclass(frozen=True)
class GitAuth:
    """How to authenticate: an https token, or an ssh key with known_hosts. repr never shows the token."""

    token: str | None = field(default=None, repr=False)
    username: str = field(default="x-access-token", repr=False)
    ssh_key: Path | None = None
    known_hosts: Path | None = None
    # A password that came in an ssh URL: never sent (ssh runs in batch mode), only scrubbed from every message.
    url_secret: str = field(default="", repr=False)

    def secrets(self) -> tuple[str, ...]:
        out = tuple(s for s in (self.url_secret,) if s)
        if self.username and self.username != "x-access-token":  # a user in an https URL may be a token itself
            out += (self.username,)
        if not self.token:
            return out
        basic = base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
        return (*out, self.token, basic)


@dataclass(frozen=True)
class SourceSpec:
    """What to follow: a branch (default), or a tag, or one commit (optionally found on `branch`)."""

    url: str
    branch: str = "main"
    tag: str | None = None
    commit: str | None = None
    auth: GitAuth = field(default_factory=GitAuth)
    depth: int | None = None  # None: blobless partial clone with full history (history/rollback need it)


@dataclass(frozen=True)
class Checkout:
    """The commit pinned for one pass and where its files are."""

    path: Path
    sha: str
    ref: str  # branch or tag name; "" for a pinned commit
    previous_sha: str | None  # what the cache had checked out before this fetch

    @property
    def revision(self) -> str:
        return format_revision(self.ref, self.sha)

    @property
    def changed(self) -> bool:
        return self.previous_sha != self.sha


def format_revision(ref: str, sha: str) -> str:
    """Flux's revision format: "<branch>@sha1:<sha>", or "sha1:<sha>" for a bare commit."""
    return f"{ref}@sha1:{sha}" if ref else f"sha1:{sha}"


def parse_revision(revision: str) -> tuple[str, str]:
    """"main@sha1:abc" -> ("main", "abc"); "sha1:abc" -> ("", "abc")."""
    ref, _, sha = revision.rpartition("sha1:")
    return ref.rstrip("@"), sha


def split_credentials(url: str) -> tuple[str, GitAuth | None]:
    """Take credentials out of a Git URL so they never land in .git/config, a log line or an error message.

    https: user:token@ becomes the auth (a lone user@ is kept as the username for a token given elsewhere, and
    never shown either). ssh (ssh://user:password@host/..., scp-like user:password@host:path): the password goes
    (ssh runs in batch mode and could never send it), the user stays: it is part of where to connect.
    """
    if "://" in url:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url, None
        userinfo, _, host = parts.netloc.rpartition("@")
        user, sep, password = userinfo.partition(":")
        if parts.scheme.lower() in ("http", "https"):
            clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
            if password:
                return clean, GitAuth(token=password, username=user or "x-access-token")
            return clean, GitAuth(token=None, username=user) if user else None
        if not sep:
            return url, None
        clean = urlunsplit((parts.scheme, f"{user}@{host}" if user else host, parts.path, parts.query,
                            parts.fragment))
        return clean, GitAuth(url_secret=password)
    at = url.rfind("@")
    if at > 0 and is_ssh_url(url) and ":" in url[:at]:  # scp-like user:password@host:path
        user, _, password = url[:at].partition(":")
        return f"{user}@{url[at + 1:]}" if user else url[at + 1:], GitAuth(url_secret=password)
    return url, None


def redact_url(url: str) -> str:
    """The URL with any password or token in it shown as ***: scheme://user:***@host, https://***@host."""
    if "://" in url:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url
        userinfo, _, host = parts.netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        shown = "***" if parts.scheme.lower() in ("http", "https") else f"{user}:***" if sep else user
        return urlunsplit((parts.scheme, f"{shown}@{host}", parts.path, parts.query, parts.fragment))
    at = url.rfind("@")
    if at > 0 and ":" in url[:at]:
        return f"{url[:at].partition(':')[0]}:***{url[at:]}"
    return url


def git_env(url: str, auth: GitAuth) -> dict[str, str]:
    """Environment for one git call: never prompt; https token as an extra header; ssh key + known_hosts."""
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": "", "GCM_INTERACTIVE": "never"}
    scheme = urlsplit(url).scheme
    if auth.token and scheme in ("http", "https"):
        basic = base64.b64encode(f"{auth.username}:{auth.token}".encode()).decode()
        # GIT_CONFIG_* (git >= 2.31) is per-process config: it is never written to .git/config.
        env.update({
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        })
    if is_ssh_url(url):
        env["GIT_SSH_COMMAND"] = ssh_command(auth)
    return env


def is_ssh_url(url: str) -> bool:
    """Whether git reaches `url` over ssh: ssh:// (git+ssh://, ssh+git://) or scp-like [user@]host:path.

    Git's own rule (connect.c): without "://", a colon before any slash is scp-like ssh ("github.com:o/r.git",
    "[git@host:2222]:r.git"); a slash first is a local path ("./a:b", "/srv/a:b").
    """
    if "://" in url:
        return url.partition("://")[0].lower() in ("ssh", "git+ssh", "ssh+git")
    colon, slash = url.find(":"), url.find("/")
    return colon > 0 and (slash < 0 or colon < slash)


def ssh_command(auth: GitAuth) -> str:
    """The ssh git runs: never prompts, refuses unknown host keys; an explicit key makes it hermetic.

    With `ssh_key` the connection ignores ~/.ssh/config and /etc/ssh/ssh_config (-F /dev/null: no Host alias,
    IdentityFile or ProxyCommand of whoever runs us) and the ssh-agent: only that key is offered. With `known_hosts`
    that file is the whole trust (not /etc/ssh/ssh_known_hosts too). Without a key, the user's own ssh setup applies
    (a developer's `sync --git-url git@...`).
    """
    parts = ["ssh"]
    if auth.ssh_key:
        parts += ["-F", "/dev/null", "-o", "IdentityAgent=none"]
    parts += ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    if auth.ssh_key:
        parts += ["-i", str(auth.ssh_key), "-o", "IdentitiesOnly=yes"]  # -i is one argv word: spaces are fine
    if auth.known_hosts:
        parts += ["-o", f"UserKnownHostsFile={_ssh_option_path(auth.known_hosts)}",
                  "-o", "GlobalKnownHostsFile=/dev/null"]
    return " ".join(shlex.quote(p) for p in parts)


def _ssh_option_path(path: Path) -> str:
    """A path as an -o value: ssh splits option values into words (whitespace; ' and " quote; backslash escapes),
    so quote when needed. Inside double quotes a ' is a plain character."""
    text = str(path)
    if not re.search(r'[\s"\'\\]', text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ssh_auth_problem(auth: GitAuth) -> str | None:
    """What ssh would refuse about the key or known_hosts files, said plainly before ssh runs; None when fine.

    ssh ignores a private key that its owner left readable by group or others (only when we own it: a root-owned
    Kubernetes Secret file read by another uid is accepted), then fails as a bare "Permission denied (publickey)".
    A key that cannot be read at all is left to ssh, whose warning names the file.
    """
    if auth.ssh_key is not None:
        try:
            st = auth.ssh_key.stat()
        except OSError:
            st = None
        if st is not None and st.st_uid == os.getuid() and st.st_mode & 0o077:
            return (f"ssh key file {auth.ssh_key} is readable by group or others (mode {st.st_mode & 0o777:04o}) "
                    f"and ssh refuses such a key: chmod 600 it (a Kubernetes Secret volume: defaultMode: 0400)")
    if auth.known_hosts is not None and not auth.known_hosts.is_file():
        return f"known_hosts file {auth.known_hosts} does not exist: every host key would be refused"
    return None


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:  # a one- or two-letter user would blank out every word it is part of
            text = text.replace(secret, "***")
    text = re.sub(r"(https?://)[^/@\s]+@", r"\1***@", text)
    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]*):[^/@\s]+@", r"\1:***@", text)


def with_url_credentials(auth: GitAuth, url_auth: GitAuth | None, url: str) -> GitAuth:
    """`auth` with what the URL carried (split_credentials): its user, its token unless one was given, its secret.
    An https URL's user alone is a token (https://<token>@host/..., the form GitHub documents for a token alone)."""
    if url_auth is None:
        return auth
    token, username = auth.token or url_auth.token, url_auth.username
    if not token and username != "x-access-token" and urlsplit(url).scheme in ("http", "https"):
        token, username = username, "x-access-token"
    return dataclasses.replace(auth, token=token, username=username if username != "x-access-token" else auth.username,
                               url_secret=url_auth.url_secret or auth.url_secret)


class GitSource:
    """One followed repository with its clone kept in `cache_dir` across passes."""

    def __init__(self, spec: SourceSpec, cache_dir: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        url, url_auth = split_credentials(spec.url)
        auth = with_url_credentials(spec.auth, url_auth, url)
        # git runs ssh inside the cache clone: a relative key or known_hosts path means one here, fixed now; a
        # leading ~ (an env value no shell expanded) is the user's home, as ssh reads it.
        auth = dataclasses.replace(
            auth, ssh_key=auth.ssh_key.expanduser().absolute() if auth.ssh_key else None,
            known_hosts=auth.known_hosts.expanduser().absolute() if auth.known_hosts else None)
        self.url = url
        self.spec = spec
        self.auth = auth
        self.timeout_s = timeout_s
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(urlsplit(url).path).name.removesuffix(".git"))[:40]
        self.path = Path(cache_dir) / f"{name or 'repo'}-{key}"
        self._repo: git.Repo | None = None
        self._blobs: dict[str, str] = {}  # read_blobs' memory, by blob sha
        self._blob_bytes = 0

    # -- public ---------------------------------------------------------------------------------
    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            self._repo = self._open_or_clone()
        return self._repo

    def fetch(self) -> Checkout:
        """Fetch what the spec names, pin the commit the remote points at now, and check it out.

        On failure nothing in the checkout changes and GitSourceError says why.
        """
        repo = self.repo
        previous = self._head(repo)
        try:
            sha, ref = self._fetch_pinned(repo)
        except GitSourceError:
            if self._healthy(repo):
                raise
            log.warning("git cache at %s is corrupt; cloning again", self.path)
            repo = self._reclone()
            previous = None
            sha, ref = self._fetch_pinned(repo)
        self._checkout(repo, sha)
        return Checkout(self.path, sha, ref, previous)

    def fetch_branch(self, branch: str) -> str | None:
        """Fetch one branch into refs/remotes/origin/<branch>; its sha, or None when the remote lacks it."""
        if not self.ls_remote_branch(branch):
            return None
        self.run(["fetch", *self._filter_args(), "--no-tags", "origin",
                  f"+refs/heads/{branch}:refs/remotes/origin/{branch}"], network=True)
        return self.run(["rev-parse", f"refs/remotes/origin/{branch}^{{commit}}"])

    def ls_remote_branch(self, branch: str) -> str | None:
        out = self.run(["ls-remote", "--heads", "origin", f"refs/heads/{branch}"], network=True)
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name == f"refs/heads/{branch}":
                return sha
        return None

    def push(self, sha: str, branch: str) -> None:
        """Push one commit to a branch, never forced. PushRejected when the branch moved on."""
        try:
            self.run(["push", "--no-verify", "origin", f"{sha}:refs/heads/{branch}"], network=True)
        except GitSourceError as err:
            if _REJECTED_RE.search(str(err)):
                raise PushRejected(str(err)) from None
            raise

    def run(self, args: Sequence[str], network: bool = False, env: Mapping[str, str] | None = None,
            raw: bool = False, stdin: bytes | None = None) -> str:
        """Run one git command in the cache clone; errors come back as GitSourceError, scrubbed.

        `raw` keeps stdout byte-exact (file contents); otherwise surrounding whitespace is stripped.
        """
        return self._run(self.repo, args, network=network, env=env, raw=raw, stdin=stdin)

    # -- internals ------------------------------------------------------------------------------
    def read_blobs(self, shas: Sequence[str]) -> dict[str, str]:
        """The text of many blobs with one `git cat-file --batch` (one process, not one per file).

        Marked network: in a partial clone git fetches missing blobs lazily, with the credentials.
        """
        if not shas:
            return {}
        # A blob's content never changes: what was read before is answered from memory (the daemon reads every
        # status file of the branch each pass; one cat-file of 5,000 of them took most of a second).
        cached = {sha: self._blobs[sha] for sha in shas if sha in self._blobs}
        wanted = [sha for sha in dict.fromkeys(shas) if sha not in cached]
        if not wanted:
            return cached
        out = self._run(self.repo, ["cat-file", "--batch"], network=True, raw=True,
                        stdin="".join(f"{sha}\n" for sha in wanted).encode())
        data = out.encode("utf-8", "surrogateescape")  # GitPython decoded with surrogateescape: bytes back exactly
        blobs: dict[str, str] = {}
        at = 0
        for sha in wanted:
            end = data.index(b"\n", at)
            header = data[at:end].decode().split()
            if len(header) != 3 or header[1] != "blob":
                raise GitSourceError(f"git cat-file: {sha} is not a readable blob ({' '.join(header)})")
            size = int(header[2])
            blobs[sha] = data[end + 1:end + 1 + size].decode("utf-8", "surrogateescape")
            at = end + 1 + size + 1  # the content is followed by a newline
        size = sum(len(text) for text in blobs.values())
        if self._blob_bytes + size > BLOB_CACHE_BYTES:  # bounded: start again rather than grow without end
            self._blobs.clear()
            self._blob_bytes = 0
        if size <= BLOB_CACHE_BYTES:
            self._blobs.update(blobs)
            self._blob_bytes += size
        return {**cached, **blobs}

    def _run(self, repo: git.Repo, args: Sequence[str], network: bool = False,
             env: Mapping[str, str] | None = None, raw: bool = False, stdin: bytes | None = None) -> str:
        full_env = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        full_env.update(git_env(self.url, self.auth))
        if network and "GIT_SSH_COMMAND" in full_env:
            problem = ssh_auth_problem(self.auth)
            if problem:
                raise GitSourceError(f"git {args[0]} failed contacting {redact_url(self.url)}: {problem}")
        if env:
            full_env.update(env)
        try:
            with contextlib.ExitStack() as stack:
                feed = None
                if stdin is not None:  # Popen needs a real file for stdin; GitPython has no input= of its own
                    feed = stack.enter_context(tempfile.TemporaryFile())
                    feed.write(stdin)
                    feed.seek(0)
                out = repo.git.execute(
                    ["git", *args], env=full_env, kill_after_timeout=self.timeout_s,
                    stdout_as_string=True, with_extended_output=False, strip_newline_in_stdout=not raw,
                    istream=feed,
                )
        except git.GitCommandError as err:
            stderr = err.stderr.strip() if isinstance(err.stderr, str) else str(err.stderr)
            stderr = re.sub(r"^stderr: '|'\Z", "", stderr).strip()
            # A file:// or dumb server ignoring --filter is harmless noise in an error message.
            stderr = "\n".join(ln for ln in stderr.splitlines() if "filtering not recognized" not in ln)
            what = "contacting " + redact_url(self.url) if network else "in " + str(self.path)
            raise GitSourceError(
                scrub(f"git {args[0]} failed {what}: {stderr or err}", self.auth.secrets())
            ) from None
        return str(out) if raw else str(out).strip()

    def _filter_args(self) -> list[str]:
        if self.spec.depth:
            return [f"--depth={self.spec.depth}"]
        return ["--filter=blob:none"]

    def _fetch_pinned(self, repo: git.Repo) -> tuple[str, str]:
        spec = self.spec
        if spec.tag:
            self._run(repo, ["fetch", *self._filter_args(), "--no-tags", "origin",
                             f"+refs/tags/{spec.tag}:refs/tags/{spec.tag}"], network=True)
            return self._run(repo, ["rev-parse", f"refs/tags/{spec.tag}^{{commit}}"]), spec.tag
        if spec.commit:
            commit = spec.commit.lower()
            if spec.branch:
                self._run(repo, ["fetch", *self._filter_args(), "--no-tags", "origin",
                                 f"+refs/heads/{spec.branch}:refs/remotes/origin/{spec.branch}"], network=True)
            if not self._has_commit(repo, commit):
                try:
                    self._run(repo, ["fetch", *self._filter_args(), "--no-tags", "origin", commit], network=True)
                except GitSourceError as err:
                    if "not our ref" in str(err) or "couldn't find remote ref" in str(err):
                        raise GitSourceError(f"commit {commit} not found in {redact_url(self.url)}") from None
                    raise
            try:
                sha = self._run(repo, ["rev-parse", "--verify", f"{commit}^{{commit}}"])
            except GitSourceError:
                raise GitSourceError(f"commit {commit} not found in {redact_url(self.url)}") from None
            return sha, ""
        try:
            self._run(repo, ["fetch", *self._filter_args(), "--no-tags", "origin",
                             f"+refs/heads/{spec.branch}:refs/remotes/origin/{spec.branch}"], network=True)
        except GitSourceError as err:
            if "couldn't find remote ref" in str(err):
                raise GitSourceError(f"branch {spec.branch!r} not found in {redact_url(self.url)}") from None
            raise
        return self._run(repo, ["rev-parse", f"refs/remotes/origin/{spec.branch}^{{commit}}"]), spec.branch

    def _checkout(self, repo: git.Repo, sha: str) -> None:
        self._run(repo, ["checkout", "--quiet", "--force", "--detach", sha], network=True)
        self._run(repo, ["clean", "-ffdxq"])

    def _has_commit(self, repo: git.Repo, sha: str) -> bool:
        try:
            self._run(repo, ["cat-file", "-e", f"{sha}^{{commit}}"])
            return True
        except GitSourceError:
            return False

    def _head(self, repo: git.Repo) -> str | None:
        try:
            return self._run(repo, ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]) or None
        except GitSourceError:
            return None

    def _healthy(self, repo: git.Repo) -> bool:
        """Cheap local checks first; a full connectivity check only when a command already failed."""
        try:
            self._run(repo, ["rev-parse", "--git-dir"])
            if self._head(repo) is not None:
                self._run(repo, ["fsck", "--connectivity-only", "--no-dangling", "--no-progress"])
            return True
        except GitSourceError:
            return False

    def _open_or_clone(self) -> git.Repo:
        try:
            repo = git.Repo(self.path)
            if repo.bare or repo.git_dir != str(self.path / ".git"):
                raise git.InvalidGitRepositoryError(str(self.path))
            urls = list(repo.remote("origin").urls) if "origin" in repo.remotes else []
            if urls != [self.url]:
                raise git.InvalidGitRepositoryError(f"{self.path} follows another remote")
            if not self._healthy_quick(repo):
                raise git.InvalidGitRepositoryError(str(self.path))
            return repo
        except (git.InvalidGitRepositoryError, git.NoSuchPathError, git.GitCommandError, ValueError, OSError):
            return self._reclone()

    def _healthy_quick(self, repo: git.Repo) -> bool:
        head_file = Path(repo.git_dir) / "HEAD"
        if not head_file.is_file():
            return False
        try:
            self._run(repo, ["rev-parse", "--git-dir"])
            head = self._head(repo)
            if head is None and head_file.read_text().startswith("ref:") is False:
                return False
            if head is not None:
                self._run(repo, ["cat-file", "-e", "HEAD^{tree}"])
            return True
        except GitSourceError:
            return False

    def _reclone(self) -> git.Repo:
        if self.path.is_symlink() or self.path.is_file():  # a stray file where the clone belongs
            self.path.unlink()
        elif self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        repo = git.Repo.init(self.path)
        with repo.config_writer() as cfg:
            cfg.set_value("remote \"origin\"", "url", self.url)
            cfg.set_value("remote \"origin\"", "fetch", "+refs/heads/*:refs/remotes/origin/*")
            cfg.set_value("gc", "auto", "0")  # a gc mid-pass would race with readers of the checkout
        self._repo = repo
        return repo
