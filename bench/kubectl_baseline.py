"""The baseline: the same rendered objects applied by `kubectl apply --server-side` against a fresh emulator.

kubectl needs --validate=false because the emulator serves no OpenAPI documents.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import emulator

KUBECTL_TIMEOUT_S = 400.0


def kubectl_path() -> str | None:
    return shutil.which("kubectl")


def kubectl_version(kubectl: str) -> str:
    try:
        out = subprocess.run([kubectl, "version", "--client", "-o", "yaml"], capture_output=True, text=True,
                             timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in out.splitlines():
        if line.strip().startswith("gitVersion:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _apply(kubectl: str, kubeconfig: Path, manifests: Path) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(
        [kubectl, "--kubeconfig", str(kubeconfig), "apply", "--server-side", "--validate=false",
         "--field-manager", "kubectl-bench", "-f", str(manifests)],
        capture_output=True, text=True, timeout=KUBECTL_TIMEOUT_S, check=False)
    elapsed = time.perf_counter() - started
    error = "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return elapsed, error


def run(kubectl: str, workdir: Path, manifests: Path, namespaces: list[str], latency_s: float = 0.0,
        again: bool = True) -> dict[str, Any]:
    """Apply twice (first apply, then the same again as kubectl's 'no-op'); time and count both. `again=False`:
    the first apply only (the latency runs)."""
    server, kubeconfig = emulator.start(workdir, namespaces, latency_s)
    again_s, error2 = 0.0, ""
    try:
        first_s, error = _apply(kubectl, kubeconfig, manifests)
        first = emulator.counts(server, emulator.KUBECTL)
        server.request_log.clear()
        if again:
            again_s, error2 = _apply(kubectl, kubeconfig, manifests)
        repeat = emulator.counts(server, emulator.KUBECTL)
    finally:
        server.stop()
    if not again:
        return {"kubectl_first_s": first_s, "kubectl_first_requests": first.total, "kubectl_error": error}
    return {"kubectl_first_s": first_s, "kubectl_first_requests": first.total,
            "kubectl_noop_s": again_s, "kubectl_noop_requests": repeat.total, "kubectl_noop_writes": repeat.writes,
            "kubectl_error": error or error2}
