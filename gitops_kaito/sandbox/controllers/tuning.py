"""The simulated KAITO's tuning runs: the Job `<workspace>` per Workspace revision, and the JobStarted progression.

KAITO v0.12.0 (`pkg/workspace/controllers/workspace_controller.go`, `pkg/workspace/manifests/manifests.go`) runs a
tuning Workspace as one Job named after it, annotated with the Workspace's revision; a new revision (any spec change)
deletes that Job and creates it again, even after it succeeded. Status (`workspace_controller.go:1148-1171`): no Job
or not started -> JobStarted False WorkspaceTuningJobStatusPending, state Pending; running -> JobStarted True
WorkspaceTuningJobStatusStarted, state Running; succeeded -> WorkspaceSucceeded True, state Succeeded; the first pod
failure -> JobStarted False WorkspaceTuningJobStatusFailed, WorkspaceSucceeded False workspaceFailed, state Failed.

Approximations: no pods; the Job runs for Timing.tuning_s and then succeeds, unless a `tuning-failed` failure is
injected for the Workspace; the Job is deleted by the simulated KAITO on Workspace deletion (no garbage collector).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client
from kubernetes.client.rest import ApiException

from gitops_kaito.sandbox.controllers import conditions as c

JOB_STARTED = "JobStarted"
ANNOTATION_REVISION = "workspace.kaito.io/revision"
LABEL_WORKSPACE = "kaito.sh/workspace"
BASE_IMAGE = "mcr.microsoft.com/aks/kaito/kaito-base:0.5.0"
PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"


def job_manifest(ws: dict[str, Any], revision: str) -> dict[str, Any]:
    """The Job KAITO makes for a tuning Workspace (`pkg/workspace/manifests/manifests.go:202-239` at v0.12.0)."""
    meta = ws["metadata"]
    name = meta["name"]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": {LABEL_WORKSPACE: name},
                     "annotations": {ANNOTATION_REVISION: revision},
                     "ownerReferences": [{"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "name": name,
                                          "uid": meta.get("uid", ""), "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": name, "image": BASE_IMAGE}]}}},
    }


class Jobs:
    """The batch/v1 calls the tuning runs need; 404 and 409 are answers."""

    def __init__(self, api: client.ApiClient) -> None:
        self.batch = client.BatchV1Api(api)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            resp = self.batch.read_namespaced_job(name, namespace, _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return cast(dict[str, Any], json.loads(cast(Any, resp).data))

    def create(self, body: dict[str, Any]) -> None:
        try:
            self.batch.create_namespaced_job(body["metadata"]["namespace"], cast(Any, body))
        except ApiException as err:
            if err.status != 409:
                raise

    def delete(self, namespace: str, name: str) -> None:
        try:
            self.batch.delete_namespaced_job(name, namespace)
        except ApiException as err:
            if err.status != 404:
                raise

    def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.batch.patch_namespaced_job_status(name, namespace, {"status": status},
                                                   _content_type="application/merge-patch+json")
        except ApiException as err:
            if err.status != 404:
                raise


def ensure_job(jobs: Jobs, ws: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The Job of the Workspace's current revision, and whether it was (re)created just now (a new run)."""
    meta = ws["metadata"]
    revision = str((meta.get("annotations") or {}).get(ANNOTATION_REVISION, ""))
    job = jobs.get(meta["namespace"], meta["name"])
    if job is not None and (job["metadata"].get("annotations") or {}).get(ANNOTATION_REVISION) == revision:
        return job, False
    if job is not None:
        jobs.delete(meta["namespace"], meta["name"])
    body = job_manifest(ws, revision)
    jobs.create(body)
    return body, True


def sync_job_status(jobs: Jobs, job: dict[str, Any], phase: str) -> None:
    """Writes the Job's counts for the run's phase, only when they differ (a write wakes every watcher)."""
    want = job_status(phase)
    have = job.get("status") or {}
    if want and any(have.get(k) != v for k, v in want.items()):
        jobs.set_status(job["metadata"]["namespace"], job["metadata"]["name"], want)


def progress(ws: dict[str, Any], resources_ok: bool, failed: bool, finished: bool,
             add: Callable[[c.Condition], bool]) -> tuple[bool, str]:
    """Adds JobStarted; returns whether WorkspaceSucceeded may turn True and the run's phase."""
    gen = ws["metadata"].get("generation")
    if not resources_ok:
        add(c.cond(JOB_STARTED, False, "WorkspaceTuningJobStatusPending", "Waiting for resources", gen))
        return False, PENDING
    if failed:
        add(c.cond(JOB_STARTED, False, "WorkspaceTuningJobStatusFailed",
                   "tuning job failed: pod exited with code 1", gen))
        return False, FAILED
    started = add(c.cond(JOB_STARTED, True, "WorkspaceTuningJobStatusStarted", "Tuning job has started", gen))
    if not started:
        return False, PENDING
    return finished, (SUCCEEDED if finished else RUNNING)


def job_status(phase: str) -> dict[str, Any]:
    """The Job's status for a run phase (what KAITO reads back: active, succeeded, failed counts)."""
    return {RUNNING: {"active": 1}, SUCCEEDED: {"active": 0, "succeeded": 1},
            FAILED: {"active": 0, "failed": 1}}.get(phase, {})
