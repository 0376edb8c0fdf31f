"""Status files: deterministic per-model YAML and STATUS.md, `since` carried over, secrets scrubbed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import git
import pytest
import yaml

from gitops_kaito.core.health import Condition, ModelHealth
from gitops_kaito.core.status import (
    STATUS_MD,
    DriftEntry,
    EndpointCheck,
    GpuCost,
    ModelReport,
    StatusMemo,
    cost_line,
    drift_text,
    gpu_cost,
    parse_model_yaml,
    render_files,
    report_from_health,
    scrub,
    summary_line,
)

REV = "main@sha1:" + "a" * 40
T1, T2 = "2025-01-01T00:00:00Z", "2025-01-01T00:05:00Z"


def report(name: str, state: str = "Ready", **kw: object) -> ModelReport:
    base = ModelReport(model_id=f"ml.{name}", namespace="ml", name=name, state=state, reason="r",
                       message=f"{name} message", sku="Standard_NC24ads_A100_v4", nodes=1, gpus=1,
                       price_per_hour=3.67, endpoint=f"http://{name}.ml.svc.cluster.local:80/v1",
                       revision=REV, source_path=f"models/ml/{name}.yaml")
    return replace(base, **kw)  # type: ignore[arg-type]


def test_files_and_summary() -> None:
    files = render_files([report("b", "Provisioning", endpoint=None), report("a"), report("c")], {}, T1)
    assert sorted(files) == [STATUS_MD, "ml/a.yaml", "ml/b.yaml", "ml/c.yaml"]
    md = files[STATUS_MD]
    assert "3 models: 2 Ready, 1 Provisioning" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ml/")]
    assert [r.split("|")[1].strip() for r in rows] == ["ml/a", "ml/b", "ml/c"]
    assert "[ok] Ready" in rows[0] and "Standard_NC24ads_A100_v4 x 1" in rows[0]
    assert "main@sha1:aaaaaaaaaaaa " in rows[0]
    assert "[..] Provisioning" in rows[1] and "b message" in rows[1]
    doc = yaml.safe_load(files["ml/a.yaml"])
    assert doc["state"] == "Ready" and doc["since"] == T1 and doc["revision"] == REV
    assert all(ord(ch) < 0x2000 for ch in md)  # no emoji


def test_unchanged_pass_is_byte_identical_and_since_moves_only_on_state_change() -> None:
    first = render_files([report("a", "Provisioning"), report("b")], {}, T1)
    second = render_files([report("a", "Provisioning"), report("b")], first, T2)
    assert second == first
    third = render_files([report("a", "Ready"), report("b")], second, T2)
    assert yaml.safe_load(third["ml/a.yaml"])["since"] == T2
    assert yaml.safe_load(third["ml/b.yaml"])["since"] == T1
    assert third["ml/b.yaml"] == first["ml/b.yaml"]



def test_the_daemons_status_memo_renders_exactly_what_a_fresh_render_does() -> None:
    """StatusMemo (kept across the daemon's passes) reuses parses and renders only while their inputs are equal: a
    changed state, a hand-edited status file and a new model all come out as without it."""
    memo = StatusMemo()
    passes = [
        ([report("a", "Provisioning"), report("b")], T1, lambda prev: prev),
        ([report("a", "Provisioning"), report("b")], T2, lambda prev: prev),
        ([report("a", "Ready"), report("b"), report("c", "Pending")], T2, lambda prev: prev),
        # Someone rewrote b's file by hand (its since): the memo must read the new text, not the old parse.
        ([report("a", "Ready"), report("b"), report("c", "Pending")], T2,
         lambda prev: {**prev, "ml/b.yaml": prev["ml/b.yaml"].replace(T1, "2024-06-01T00:00:00Z")}),
    ]
    with_memo: dict[str, str] = {}
    fresh: dict[str, str] = {}
    for reports, now, edit in passes:
        with_memo = render_files(reports, edit(with_memo), now, memo=memo)
        fresh = render_files(reports, edit(fresh), now)
        assert with_memo == fresh
    assert yaml.safe_load(with_memo["ml/b.yaml"])["since"] == "2024-06-01T00:00:00Z"

def test_roundtrip() -> None:
    r = report("a", endpoint_check=EndpointCheck(True, "phi-4-mini-instruct"),
               conditions=(("InferenceReady", "True", "ok", ""),), node_phases=(("ws1", "Ready", ""),),
               since=T1, last_error="apply failed once")
    files = render_files([r], {}, T1)
    back = parse_model_yaml(files["ml/a.yaml"])
    assert back == r
    assert "answers (phi-4-mini-instruct)" in files[STATUS_MD]


def test_pipes_and_newlines_do_not_break_the_table() -> None:
    md = render_files([report("a", "Failed", message="bad | thing\nsecond line")], {}, T1)[STATUS_MD]
    row = next(ln for ln in md.splitlines() if ln.startswith("| ml/a"))
    assert "bad \\| thing second line" in row


def test_secrets_never_appear() -> None:
    hf = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    msgs = [
        f"pull failed with token {hf}",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcDEF123",
        "url https://user:pa55word@registry.example.com/v2",
        "HF_TOKEN=supersecretvalue1 rejected",
        "key AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCd leaked",
    ]
    r = report("a", "Failed", message=msgs[0], last_error=msgs[1],
               conditions=(("InferenceReady", "False", "ImagePullError", msgs[2]),),
               node_phases=(("ws1", "Failed", msgs[3]),), reason=msgs[4])
    text = "".join(render_files([r], {}, T1).values())
    for leaked in (hf, "eyJhbGciOiJIUzI1NiJ9", "pa55word", "supersecretvalue1", "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"):
        assert leaked not in text
    assert "HF_TOKEN" in text  # secret names stay readable
    assert REV in text  # commit shas are not mistaken for secrets


def test_scrub_leaves_plain_text() -> None:
    plain = "secret hf-token not found in namespace ml; instance Standard_NC24ads_A100_v4"
    assert scrub(plain) == plain


def test_summary_line() -> None:
    assert summary_line([]) == "0 models"
    assert summary_line([report("a")]) == "1 model: 1 Ready"
    assert summary_line([report("a", "Failed"), report("b"), report("c", "Failed")]) == "3 models: 1 Ready, 2 Failed"


def test_report_from_health() -> None:
    h = ModelHealth("Ready", "workspaceSucceeded", "serving",
                    (Condition("InferenceReady", "True", "ok", ""),), (), "http://x", True)
    r = report_from_health("ml", "phi", h, sku="S", nodes=2, revision=REV)
    assert r.model_id == "ml.phi" and r.conditions == (("InferenceReady", "True", "ok", ""),)
    assert r.endpoint == "http://x" and r.nodes == 2


def test_status_shows_what_the_gpu_nodes_cost_per_hour() -> None:
    reports = [report("a"), report("b", "Provisioning", nodes=2, price_per_hour=7.34),
               report("byo", sku=None, price_per_hour=None), report("bad", "Invalid"), report("off", "Suspended")]
    md = render_files(reports, {}, T1)[STATUS_MD]
    assert "GPU nodes: 3 at $11.01 per hour" in md
    assert "1 model on nodes without a known price" in md  # bring-your-own nodes
    [row] = [ln for ln in md.splitlines() if ln.startswith("| ml/b ")]
    assert "| $7.34/h |" in row
    assert gpu_cost(reports) == GpuCost(nodes=3, usd_per_hour=11.01, unpriced_models=1)
    assert gpu_cost([report("x", "Invalid")]) is None and cost_line([report("x", "Suspended")]) == ""


# -- drift left in place (drift: report) -------------------------------------------------------------------------

WS_DRIFT = DriftEntry("Workspace/ml/a", ("resource.count",), ("kubectl-edit",))
CM_DRIFT = DriftEntry("ConfigMap/ml/a-inference-config", ("data.inference_config.yaml",))


def test_drift_is_listed_in_the_file_and_the_message_column_while_the_state_stays() -> None:
    files = render_files([report("a", drift=(WS_DRIFT, CM_DRIFT)), report("b")], {}, T1)
    doc = yaml.safe_load(files["ml/a.yaml"])
    assert doc["state"] == "Ready"
    assert doc["drift"] == [
        {"object": "ConfigMap/ml/a-inference-config", "fields": ["data.inference_config.yaml"], "by": [],
         "since": T1},
        {"object": "Workspace/ml/a", "fields": ["resource.count"], "by": ["kubectl-edit"], "since": T1},
    ]
    assert "drift" not in yaml.safe_load(files["ml/b.yaml"])  # none: the file is as it was before drift existed
    row = next(ln for ln in files[STATUS_MD].splitlines() if ln.startswith("| ml/a "))
    assert "[ok] Ready" in row
    assert row.split(" | ")[-1] == ("drifted: ConfigMap data.inference_config.yaml (hand edit); Workspace "
                                    "resource.count (by kubectl-edit), not corrected: drift: report |")


def test_unchanged_drift_keeps_its_since_and_renders_byte_identical() -> None:
    first = render_files([report("a", drift=(WS_DRIFT,))], {}, T1)
    second = render_files([report("a", drift=(WS_DRIFT,))], first, T2)
    assert second == first  # no new status commit for a drift already reported
    more = replace(WS_DRIFT, fields=("resource.count", "inference.config"))
    third = render_files([report("a", drift=(more, CM_DRIFT))], second, T2)
    entries = {d["object"]: d["since"] for d in yaml.safe_load(third["ml/a.yaml"])["drift"]}
    assert entries == {"Workspace/ml/a": T1, "ConfigMap/ml/a-inference-config": T2}  # since: per object
    gone = render_files([report("a")], third, T2)
    assert "drift" not in yaml.safe_load(gone["ml/a.yaml"])
    back = render_files([report("a", drift=(WS_DRIFT,))], gone, "2025-01-01T00:10:00Z")
    assert yaml.safe_load(back["ml/a.yaml"])["drift"][0]["since"] == "2025-01-01T00:10:00Z"  # drifted anew


def test_drift_roundtrips_and_a_long_field_list_is_cut_in_the_table() -> None:
    many = replace(WS_DRIFT, fields=tuple(f"f{i}" for i in range(7)))
    files = render_files([report("a", "Provisioning", drift=(many,))], {}, T1)
    parsed = parse_model_yaml(files["ml/a.yaml"])
    assert parsed.drift == (replace(many, since=T1),)
    row = next(ln for ln in files[STATUS_MD].splitlines() if ln.startswith("| ml/a "))
    assert "a message; drifted: Workspace f0, f1, f2, f3 and 3 more (by kubectl-edit)" in row
    assert drift_text(()) == ""


def test_the_status_command_and_the_wait_display_show_drift_left_in_place(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gitops_kaito.cli import main
    from gitops_kaito.cli.progress import model_row

    drifted = report("a", drift=(WS_DRIFT,))
    git.Repo.init(tmp_path)  # `status --repo` reads a clone
    for rel, text in render_files([drifted, report("b")], {}, T1).items():
        (tmp_path / "status" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "status" / rel).write_text(text)
    assert main(["status", "--repo", str(tmp_path)]) == 0
    [line] = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("ml/a ")]
    assert line.rstrip().endswith("drifted: Workspace resource.count (by kubectl-edit), not corrected: drift: report")
    assert model_row(drifted)[3].endswith("not corrected: drift: report")
    assert "drifted" not in model_row(report("b"))[3]


def test_status_md_lists_pass_problems_capped_and_scrubbed() -> None:
    problems = ["token ghp_" + "a" * 36] + [f"templates/workspace.yaml:{i}: broken" for i in range(1, 24)]
    md = render_files([report("a")], {}, T1, problems=problems)[STATUS_MD]
    listed = [ln for ln in md.splitlines() if ln.startswith("- ")]
    assert len(listed) == 21 and listed[-1] == "- ... and 4 more (`gitops-kaito validate` lists them)"
    assert listed[0].startswith("- token ") and "ghp_" not in md
    assert "Problems in the last pass" not in render_files([report("a")], {}, T1)[STATUS_MD]
