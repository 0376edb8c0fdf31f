"""Simulated controllers of the sandbox: KAITO, Karpenter / gpu-provisioner, node loss, and the model server.

They reach the API only through the official kubernetes client over HTTP, with User-Agent gitops-kaito-sandbox/<name>.
"""

from __future__ import annotations

from gitops_kaito.sandbox.controllers.base import USER_AGENT_PREFIX, Controller
from gitops_kaito.sandbox.controllers.chaos import ChaosController
from gitops_kaito.sandbox.controllers.failures import KINDS as FAILURE_KINDS
from gitops_kaito.sandbox.controllers.failures import Failure, FailureBook
from gitops_kaito.sandbox.controllers.kaito import KaitoController
from gitops_kaito.sandbox.controllers.karpenter import KarpenterController
from gitops_kaito.sandbox.controllers.modelserver import ModelServer
from gitops_kaito.sandbox.controllers.timing import Timing

__all__ = [
    "FAILURE_KINDS",
    "USER_AGENT_PREFIX",
    "ChaosController",
    "Controller",
    "Failure",
    "FailureBook",
    "KaitoController",
    "KarpenterController",
    "ModelServer",
    "Timing",
]
