"""Keeps bench/run.py from rotting: a tiny run must finish, print its table and write sane JSON rows.

No timing is asserted; only that every measurement ran and the no-op pass wrote nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gitops_kaito.model.objects import MANAGED_KINDS

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.cluster


def test_bench_runs_at_three_models_and_the_noop_pass_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--sizes", "3", "--no-kubectl",
                           "--no-git", "--latencies", "0,5", "--edit-sizes", "3", "--json", str(out)],
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| models |" in proc.stdout
    data = json.loads(out.read_text())
    assert data["machine"]["nproc"] >= 1 and data["machine"]["python"]
    (row,) = data["rows"]
    assert row["models"] == 3 and row["objects"] >= 3
    assert row["first_created"] == row["objects"] and row["first_failed"] == 0
    assert row["noop_writes"] == 0 and row["noop_changes"] == 0
    assert row["noop_cached_writes"] == 0 and row["noop_cached_requests"] == row["noop_api_requests"]
    assert 1 <= row["noop_lists"] <= len(MANAGED_KINDS)  # one LIST per managed kind (of one page at this size)
    assert row["peak_rss_mb"] > 0
    # The watch-driven daemon: a no-op pass asks the API server nothing; a hand edit was corrected.
    assert row["daemon_noop_requests"] == 0 and row["daemon_noop_writes"] == 0 and row["daemon_replan_requests"] == 0
    (slow,) = data["latency_rows"]
    assert slow["latency_ms"] == 5 and slow["first_created"] == row["objects"]
    (edit,) = data["hand_edit"]
    assert edit["models"] == 3 and len(edit["seconds"]) == edit["edits"] > 0
