"""`gitops-kaito demo`: the whole loop on one machine, no cluster needed: sandbox, Git remote, daemon, status in Git.

Two models go from a commit to Ready, then a change and its rollback are reconciled; it ends by saying where to look.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import git
import yaml

from gitops_kaito.cli import progress
from gitops_kaito.cli.common import EXIT_OK, CliError
from gitops_kaito.model.states import ModelState

NAMESPACE = "demo"
LEASE_NAMESPACE = "gitops-kaito"
AUTHOR = {"GIT_AUTHOR_NAME": "Demo User", "GIT_AUTHOR_EMAIL": "demo@example.com",
          "GIT_COMMITTER_NAME": "Demo User", "GIT_COMMITTER_EMAIL": "demo@example.com"}
MODELS: dict[str, dict[str, Any]] = {
    # instanceType pinned on the model whose config changes: a longer context could otherwise pick another SKU,
    # and instanceType is immutable in KAITO.
    "phi-4-mini": {"model": "phi-4-mini-instruct", "instanceType": "Standard_NC24ads_A100_v4",
                   "config": {"max-model-len": 4096}},
    "qwen-coder": {"model": "qwen2.5-coder-7b-instruct"},
}
CHANGED = "phi-4-mini"
CHANGED_LEN = 8192


class DemoError(Exception):
    """A step did not finish in time; the message says which and what was seen last."""


@dataclass(frozen=True)
class DemoSettings:
    speed: str = "demo"  # fast (seconds, for tests) | demo (about a minute)
    workdir: Path | None = None  # default: a new temporary directory, kept so you can look at it afterwards
    step_timeout_s: float = 120.0
    stay: bool = False  # keep the sandbox running after the tour until Ctrl-C (chat and kubectl work then)
    live: bool | None = None  # redraw a table in place; default: when out is a TTY


@dataclass
class DemoResult:
    workdir: Path
    remote: Path
    clone: Path
    kubeconfig: Path
    states: dict[str, str] = field(default_factory=dict)  # model -> state in the committed status
    change_sha: str = ""
    revert_sha: str = ""
    chat_answer: str = ""


DEMO_COLUMNS = ("model", "cluster", "status in git", "message")


def _demo_line(row: Sequence[str]) -> str:
    model, cluster, in_git, message = row
    return f"  {model}: cluster {cluster}, status in git {in_git}" + (f" ({message[:90]})" if message else "")


class Progress(progress.Progress):
    """The demo's table (cluster state beside the state committed to Git), drawn by gitops_kaito.cli.progress."""

    def __init__(self, out: TextIO, live: bool) -> None:
        super().__init__(out, live, DEMO_COLUMNS, plain=_demo_line)


class Demo:
    def __init__(self, settings: DemoSettings, out: TextIO | None = None) -> None:
        self.settings = settings
        self.out = out or sys.stdout
        live = settings.live if settings.live is not None else self.out.isatty()
        self.progress = Progress(self.out, live)
        self.secret = os.urandom(24).hex().encode()
        self._api: Any = None  # the sandbox's admin client while the tour runs

    # -- the tour ------------------------------------------------------------------------------------------------
    def run(self) -> DemoResult:
        from gitops_kaito.sandbox import Sandbox, SandboxSettings
        from gitops_kaito.service.service import Service

        work = self.settings.workdir or Path(tempfile.mkdtemp(prefix="gitops-kaito-demo-"))
        work.mkdir(parents=True, exist_ok=True)
        for leftover in ("models.git", "models", "cache"):
            shutil.rmtree(work / leftover, ignore_errors=True)
        say = self.progress.say
        say(f"gitops-kaito demo (speed {self.settings.speed}) in {work}")
        say("1/5 starting the sandbox: a local Kubernetes API with simulated KAITO, Karpenter and model server")
        sandbox = Sandbox(SandboxSettings(speed=self.settings.speed, kubeconfig_path=work / "kubeconfig.yaml",
                                          namespaces=("default", NAMESPACE, LEASE_NAMESPACE)))
        sandbox.start()
        # One client for every look the demo takes at the cluster (progress polls, chat, the ConfigMap check).
        self._api = sandbox.api_client("gitops-kaito-demo/progress")
        try:
            result = DemoResult(work, work / "models.git", work / "models", sandbox.kubeconfig_path)
            say("2/5 creating the model repository (a local bare remote) with two model requests")
            clone = self._create_repository(result)
            secret_file = work / "webhook-secret"
            secret_file.write_bytes(self.secret)
            interval = "1s" if self.settings.speed == "fast" else "3s"
            from gitops_kaito.service.settings import RunSettings

            service = Service.build(RunSettings(
                git_url=result.remote.as_uri(), interval=interval, listen="127.0.0.1:0",
                webhook_secret_file=str(secret_file), kubeconfig=str(result.kubeconfig),
                cache_dir=str(work / "cache"), lease_namespace=LEASE_NAMESPACE))
            service.start()
            try:
                say(f"3/5 running the reconciler (gitops-kaito run, every {interval}, webhooks on {service.url}); "
                    "waiting for both models to be Ready with their status committed")
                self._wait_ready(result)
                result.chat_answer = self._chat(result)
                say(f"4/5 a change: {CHANGED} max-model-len 4096 -> {CHANGED_LEN}, pushed, webhook sent")
                result.change_sha = self._change(clone, service.url)
                self._wait_reconciled(result, CHANGED_LEN, result.change_sha)
                say(f"5/5 a rollback: git revert {result.change_sha[:12]}, pushed, webhook sent")
                result.revert_sha = self._revert(clone, result.change_sha, service.url)
                self._wait_reconciled(result, 4096, result.revert_sha)
                self._where_to_look(result, service.url)
                if self.settings.stay:
                    say("The sandbox and the reconciler keep running; press Ctrl-C to stop.")
                    try:
                        while True:
                            time.sleep(3600)
                    except KeyboardInterrupt:
                        say("stopping")
            finally:
                service.stop()
        finally:
            self._api.close()
            sandbox.stop()
        return result

    # -- steps ---------------------------------------------------------------------------------------------------
    def _git(self, repo: git.Repo, *args: str) -> str:
        with repo.git.custom_environment(**AUTHOR):
            return str(repo.git.execute(["git", *args]))

    def _create_repository(self, result: DemoResult) -> git.Repo:
        git.Repo.init(result.remote, bare=True, initial_branch="main")
        clone = git.Repo.clone_from(result.remote.as_uri(), result.clone)
        self._git(clone, "checkout", "-q", "-B", "main")
        for name, spec in MODELS.items():
            path = result.clone / "models" / NAMESPACE / f"{name}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump({"apiVersion": "gitops.kaito.sh/v1alpha1", "kind": "ModelDeployment",
                                            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec},
                                           sort_keys=False))
        self._git(clone, "add", "models")
        self._git(clone, "commit", "-q", "-m", "Two models for the demo")
        self._git(clone, "push", "-q", "origin", "main")
        return clone

    def _status(self, result: DemoResult) -> dict[str, Any]:
        """The status files as committed on the remote's main branch."""
        from gitops_kaito.core.status import parse_model_yaml

        bare = git.Repo(result.remote)
        out: dict[str, Any] = {}
        for name in MODELS:
            try:
                out[name] = parse_model_yaml(bare.git.show(f"main:status/{NAMESPACE}/{name}.yaml"))
            except (git.GitCommandError, ValueError):
                continue
        return out

    def _cluster_states(self) -> dict[str, tuple[str, str]]:
        from kubernetes import client

        from gitops_kaito.core import health

        listed: Any = client.CustomObjectsApi(self._api).list_namespaced_custom_object(
            "kaito.sh", "v1beta1", NAMESPACE, "workspaces")
        items = list(listed["items"])
        out: dict[str, tuple[str, str]] = {}
        for ws in items:
            h = health.assess(ws)
            out[ws["metadata"]["name"]] = (h.state, h.message)
        return out

    def _wait(self, what: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.settings.step_timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {self.settings.step_timeout_s:.0f}s waiting for {what}")
            time.sleep(0.3)

    def _wait_ready(self, result: DemoResult) -> None:
        def check() -> bool:
            live = self._cluster_states()
            committed = self._status(result)
            rows = []
            for name in MODELS:
                state, message = live.get(name, ("-", "not created yet"))
                report = committed.get(name)
                rows.append((name, state, report.state if report else "-", message if state != ModelState.READY else ""))
            self.progress.show(rows)
            result.states = {n: r.state for n, r in committed.items()}
            return all(result.states.get(n) == ModelState.READY for n in MODELS)

        self._wait("both models Ready with their status committed", check)
        self.progress.say("   both models are Ready and their status is committed to the repository")

    def _chat(self, result: DemoResult) -> str:
        from gitops_kaito.adapters import endpoint

        reply = endpoint.chat(self._api, NAMESPACE, CHANGED,
                              [{"role": "user", "content": "What does gitops-kaito do?"}], max_tokens=64)
        self.progress.say(f"   chat with {NAMESPACE}/{CHANGED} through the service proxy: {reply.content[:100]}")
        return reply.content

    def _webhook(self, url: str, sha: str) -> None:
        from gitops_kaito.service.webhooks import sign

        body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
        req = urllib.request.Request(f"{url}/hooks/github", data=body, method="POST", headers={
            "X-GitHub-Event": "push", "X-Hub-Signature-256": sign(self.secret, body),
            "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def _push(self, clone: git.Repo, url: str) -> str:
        for _ in range(5):  # the reconciler pushes status commits too: rebase on them and retry
            try:
                self._git(clone, "push", "-q", "origin", "main")
                break
            except git.GitCommandError:
                self._git(clone, "pull", "-q", "--rebase", "origin", "main")
        sha = clone.head.commit.hexsha
        self._webhook(url, sha)
        return sha

    def _change(self, clone: git.Repo, url: str) -> str:
        self._git(clone, "pull", "-q", "--rebase", "origin", "main")
        path = Path(clone.working_dir) / "models" / NAMESPACE / f"{CHANGED}.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["spec"]["config"]["max-model-len"] = CHANGED_LEN
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        self._git(clone, "commit", "-q", "-am", f"{CHANGED}: max-model-len {CHANGED_LEN}")
        return self._push(clone, url)

    def _revert(self, clone: git.Repo, sha: str, url: str) -> str:
        self._git(clone, "pull", "-q", "--rebase", "origin", "main")
        self._git(clone, "revert", "--no-edit", sha)
        return self._push(clone, url)

    def _wait_reconciled(self, result: DemoResult, max_len: int, sha: str) -> None:
        from kubernetes import client

        def check() -> bool:
            cm: Any = client.CoreV1Api(self._api).read_namespaced_config_map(f"{CHANGED}-inference-config", NAMESPACE)
            applied = yaml.safe_load(cm.data["inference_config.yaml"])["vllm"]["max-model-len"] == max_len
            report = self._status(result).get(CHANGED)
            committed = report is not None and sha in report.revision and report.state == ModelState.READY
            return bool(applied and committed)

        self._wait(f"max-model-len {max_len} applied and status committed at {sha[:12]}", check)
        self.progress.say(f"   reconciled: the ConfigMap says max-model-len {max_len}; status committed at "
                          f"revision {sha[:12]}, the model is Ready")

    def _where_to_look(self, result: DemoResult, url: str) -> None:
        kc = result.kubeconfig
        lines = [
            "",
            "Where to look:",
            f"  the model repository (your clone):  {result.clone}",
            f"  its history, status commits too:    git -C {result.clone} pull -q && git -C {result.clone} log "
            "--oneline -- models status",
            f"  the status report:                  git -C {result.clone} show origin/main:status/STATUS.md",
            f"  the same, as a table:               gitops-kaito status --git-url {result.remote.as_uri()}",
            f"  the sandbox kubeconfig:             {kc}",
        ]
        if self.settings.stay:
            lines += [
                f"  Workspaces:                         kubectl --kubeconfig {kc} get workspaces -A",
                f"  chat with a model:                  gitops-kaito chat {NAMESPACE}/{CHANGED} \"hello\" "
                f"--kubeconfig {kc}",
                f"  metrics:                            curl -s {url}/metrics | grep gitops_kaito_",
            ]
        else:
            lines += ["  run `gitops-kaito demo --stay` to keep the sandbox up and try kubectl and "
                      "`gitops-kaito chat` against it"]
        self.progress.say("\n".join(lines))


def run_demo(settings: DemoSettings, out: TextIO | None = None) -> DemoResult:
    return Demo(settings, out).run()


# --- the command ---------------------------------------------------------------------------------------------

def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="see the whole loop work locally: sandbox cluster, Git remote, reconciler, change, rollback",
        description="Start a local sandbox (simulated KAITO, Karpenter and model server), create a model repository "
                    "with two model requests as a local bare remote, run the reconciler, and show progress until "
                    "both models are Ready with their status committed; then push a change and roll it back. "
                    "Needs no cluster, no cloud account and no network.")
    parser.add_argument("--speed", choices=["demo", "fast"], default="demo",
                        help="demo: simulated provisioning takes about half a minute; fast: seconds (tests)")
    parser.add_argument("--workdir", help="where the repository, clone and kubeconfig go (default: a new temp dir)")
    parser.add_argument("--stay", action="store_true",
                        help="keep the sandbox and reconciler running afterwards, for kubectl and chat (Ctrl-C ends)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds each step may take (default 120)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    if not args.verbose:
        # The demo prints its own progress; the reconciler's log lines would bury it (-v brings them back).
        for name in ("gitops_kaito", "apscheduler"):
            logging.getLogger(name).setLevel(logging.ERROR)

    settings = DemoSettings(speed=args.speed, workdir=Path(args.workdir) if args.workdir else None,
                            step_timeout_s=args.timeout, stay=args.stay)
    try:
        run_demo(settings)
    except DemoError as err:
        raise CliError(f"demo: {err}") from None
    return EXIT_OK
