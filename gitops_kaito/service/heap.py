"""The daemon's heap: once a new desired state is built, what lives on goes to the collector's permanent generation.

A daemon following 5,000 models holds millions of long-lived objects (the rendered desired state, the watched
objects); each full collection walked all of them (~0.5 s on this project's bench machine), and one came in most
passes after a change, so a hand edit waited for it. Frozen objects are still freed by reference counting when
dropped; only cycles among them would wait for the next settle, which unfreezes and collects first.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect everything once, then freeze what survived: call after a pass that built a new desired state."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


__all__ = ["settle"]
