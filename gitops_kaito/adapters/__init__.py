"""Thin I/O adapters: the Kubernetes client, git (source, write-back, history), Events, endpoint probes.
May import model/, repo/ and core/; never reconcile/, service/, cli/ or the sandbox."""
