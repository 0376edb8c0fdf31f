"""gitops-kaito: a GitOps reconciler for KAITO (Kubernetes AI Toolchain Operator).

Model requests live in Git; Workspaces and GPU nodes are rendered, applied and watched; status goes back to Git.
"""

__version__ = "0.1.0"
