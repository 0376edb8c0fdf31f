"""Local KAITO sandbox: a loopback Kubernetes API emulator and simulated controllers.

The emulator (`apiserver.ApiServer`) is the test double for everything that talks to a cluster.
"""

from __future__ import annotations
