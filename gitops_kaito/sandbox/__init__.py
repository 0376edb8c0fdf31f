"""Local KAITO sandbox: a loopback Kubernetes API emulator and simulated controllers.

The emulator (`apiserver.ApiServer`) is the test double for everything that talks to a cluster.
"""

from __future__ import annotations

from gitops_kaito.sandbox.controllers.failures import Failure as Failure
from gitops_kaito.sandbox.runtime import Sandbox as Sandbox
from gitops_kaito.sandbox.runtime import SandboxSettings as SandboxSettings
