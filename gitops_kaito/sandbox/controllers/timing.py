"""How long each simulated step takes: instant for tests ("fast"), seconds apart for a demo ("demo").

One Timing is shared by every controller of a sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    launch_s: float = 0.0          # NodeClaim created -> Launched (the cloud VM is being created)
    register_s: float = 0.0        # Launched -> Registered (the Node object appears)
    initialize_s: float = 0.0      # Registered -> Initialized (the Node is Ready, GPU plugin up)
    ready_s: float = 0.0           # Initialized -> Ready
    condition_step_s: float = 0.0  # between two Workspace conditions turning True
    model_load_s: float = 0.0      # ResourceReady -> InferenceReady (image pull, weights download)
    tuning_s: float = 0.0          # a tuning Job's run: JobStarted (state Running) -> Succeeded
    resync_s: float = 1.0          # a full pass even without watch events
    watch_timeout_s: int = 10      # server-side watch timeout; Sandbox.stop() interrupts sooner
    # Simulated seconds per real second for NodeClaim expiry only (spec.expireAfter): 3600 makes 720h pass in 12
    # minutes, so a test can see Karpenter's default expire a node without waiting 30 days.
    expiry_scale: float = 1.0

    @classmethod
    def for_speed(cls, speed: str) -> Timing:
        if speed == "fast":
            return cls()
        if speed == "demo":
            return cls(launch_s=4.0, register_s=5.0, initialize_s=3.0, ready_s=1.0,
                       condition_step_s=1.5, model_load_s=8.0, tuning_s=10.0, resync_s=2.0)
        raise ValueError(f"unknown speed {speed!r}; expected fast or demo")
