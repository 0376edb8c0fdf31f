"""GPU node provisioning modes where gitops-kaito creates the nodes itself (here: AKS agent pools).

`agentpool` is pure (desired pools, plan); `aks` is the Azure adapter; `provisioner` carries a plan out.
"""
