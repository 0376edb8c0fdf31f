"""A previous status file of the wrong shape (edited by hand, a bad merge on the status branch) is read as no
previous file: the pass rewrites it instead of failing on it for good."""

from __future__ import annotations

import pytest
import yaml

from gitops_kaito.core.status import ModelReport, render_files

T1 = "2025-01-01T00:00:00Z"


@pytest.mark.parametrize("broken", [
    "drift:\n- object: Workspace/ml/a\n  fields: 5\n",  # drift entries (new this release) took any shape
    "drift: [1, 2]\nconditions: 7\n",
    "nodePhases: 3\n",
])
def test_a_previous_status_file_of_the_wrong_shape_is_rewritten(broken: str) -> None:
    report = ModelReport("ml.a", "ml", "a", "Ready", revision="main@sha1:" + "a" * 40)
    previous = {report.status_path: f"model: ml/a\nstate: Ready\nsince: '2020-01-01T00:00:00Z'\n{broken}"}
    files = render_files([report], previous, T1)
    assert yaml.safe_load(files[report.status_path])["since"] == T1, "the broken file was trusted"
