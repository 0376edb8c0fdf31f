"""Pure decisions: render desired objects, plan against live state, health, status files, adoption.
May import model/ and repo/; never adapters/, reconcile/, service/, cli/ or the sandbox."""
