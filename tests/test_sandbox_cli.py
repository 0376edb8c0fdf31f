"""`gitops-kaito sandbox` as a user runs it: a foreground process, a kubeconfig for any client, a clean Ctrl-C.

kubectl is used when installed (it needs no /openapi for `get`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import yaml
from kubernetes import client, config

from tests.fixtures_cluster import wait_until

WORKSPACE = """apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata: {name: cli-demo, namespace: default}
resource:
  instanceType: Standard_NC24ads_A100_v4
  labelSelector: {matchLabels: {apps: cli-demo}}
inference: {preset: {name: phi-4-mini-instruct}}
"""


class Running:
    """The command in a subprocess, its stdout collected line by line in a thread."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "gitops_kaito", "sandbox", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=20)
        self._reader.join(5)
        return code


def test_sandbox_command_serves_a_kubeconfig_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "k.yaml"
    run = Running("--kubeconfig-out", str(kubeconfig), "--speed", "fast")
    try:
        wait_until(lambda: "press Ctrl-C" in run.output or run.proc.poll() is not None, timeout=30,
                   what="the sandbox to start")
        assert run.proc.poll() is None, run.output
        assert f"kubeconfig: {kubeconfig}" in run.output
        assert "kubectl --kubeconfig" in run.output
        api = config.new_client_from_config(config_file=str(kubeconfig))
        assert "default" in [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]

        kubectl = shutil.which("kubectl")
        if kubectl:
            applied = subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), "apply", "--validate=false", "-f", "-"],
                                     input=WORKSPACE, capture_output=True, text=True, timeout=60)
            assert applied.returncode == 0, applied.stderr
        else:
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                "kaito.sh", "v1beta1", "default", "workspaces", yaml.safe_load(WORKSPACE))
        custom = client.CustomObjectsApi(api)
        wait_until(lambda: (custom.get_namespaced_custom_object("kaito.sh", "v1beta1", "default", "workspaces",
                                                                "cli-demo").get("status") or {}).get("state") == "Ready",
                   what="the Workspace Ready in the command's sandbox")
        if kubectl:
            got = subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), "get", "workspaces", "-A"],
                                 capture_output=True, text=True, timeout=60)
            assert got.returncode == 0, got.stderr
            header, row = got.stdout.splitlines()[:2]
            assert header.split()[:3] == ["NAMESPACE", "NAME", "INSTANCE"] and "STATE" in header
            assert row.split()[:3] == ["default", "cli-demo", "Standard_NC24ads_A100_v4"] and "Ready" in row.split()
        api.close()
    finally:
        code = run.stop()
    assert code == 0, run.output
    assert run.lines[-1] == "sandbox stopped"
    assert "Traceback" not in run.output


def test_sandbox_command_reports_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "gitops_kaito", "sandbox", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
