"""docs/real-cluster.md's kind/k3d path, run as written against a cluster that serves deploy/crds and runs no KAITO
controller (a bare API emulator here: kind is not installed in CI). Only creating the cluster and applying the CRDs
are done by the fixture instead; the listen port is a free one."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_cluster import ClusterTarget, private_emulator, wait_until
from tests.test_readme_run import Shell, free_port, readyz, shell  # noqa: F401 - the shell fixture

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine")]


def kind_path() -> list[str]:
    text = (ROOT / "docs" / "real-cluster.md").read_text(encoding="utf-8")
    block = text[text.index("## 5."):].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture
def crd_cluster(tmp_path: Path) -> Iterator[ClusterTarget]:
    with private_emulator(tmp_path / "emulator", namespace="scratch") as target:
        yield target


def test_the_kind_path_works_as_written_on_a_cluster_with_only_the_crds(shell: Shell,  # noqa: F811
                                                                         crd_cluster: ClusterTarget) -> None:
    steps = kind_path()
    assert steps[0].startswith("kind create cluster") and steps[1] == "kubectl apply -f deploy/crds/", steps
    shell.env["KUBECONFIG"] = str(crd_cluster.kubeconfig)
    *commands, run = steps[2:]
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=shell.work, env=shell.env, text=True, capture_output=True,
                              timeout=120)
        expected = 1 if command.startswith("gitops-kaito plan") else 0  # plan: 1 = there are changes
        assert done.returncode == expected, f"{command}\n{done.stdout}\n{done.stderr}"
        if command.startswith("gitops-kaito sync"):
            assert "default.phi-4-mini-instruct" in done.stdout and "Applied" in done.stdout, done.stdout
    port = free_port()
    assert "127.0.0.1:8080" in run
    daemon = shell.start(run.replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    wait_until(lambda: readyz(port)[0] == 200, timeout=90, what=f"/readyz 200 (daemon output:\n{daemon.text})")
    log = subprocess.run(["git", "-C", str(shell.work / "models.git"), "log", "--format=%s", "main"],
                         capture_output=True, text=True, check=True).stdout
    assert "status" in log.splitlines()[0].lower(), log  # the daemon pushed its status commit
