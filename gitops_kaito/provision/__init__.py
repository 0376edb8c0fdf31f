"""GPU node provisioning where gitops-kaito creates the nodes itself; here the `aks` mode's agent pools.

`agentpool` is pure (desired pools, plan_pools), `aks` is the Azure adapter (settings, credential, client),
`provisioner` carries a plan out. The sync engine, once per pass and after the kube apply:

    pools = agentpool.desired_pools(load.models)                     # aks-mode, non-suspended models
    settings = aks.merge_settings(load.config.azure)                  # + GITOPS_KAITO_AZURE_* (+ flags)
    prov = provisioner.AgentPoolProvisioner.for_settings(settings)    # keep it across passes
    outcomes = prov.reconcile(pools, revision=rev, prune=load.config_ok and not guard_tripped,
                              keep_model_ids=load.discovered_ids, allow_replace=policy == "auto")
    # outcome.ready gates the model's Workspace; outcome.state/code/message go to its status.

Importing this package does not import the Azure SDK; `aks` and `provisioner` do.
"""
