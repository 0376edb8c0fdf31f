"""GPU node provisioning where gitops-kaito creates the nodes itself; here the `aks` mode's agent pools.

`agentpool` is pure (desired pools, plan_pools), `aks` is the Azure adapter (settings, credential, client),
`provisioner` carries a plan out, `pools` is what the sync pass calls (sync.run_pass(..., pools=PoolRunner(...))):

    runner = pools.PoolRunner(overrides_from_flags)                   # keep it across passes (the daemon does)
    plan = runner.prepare(models, load.config.azure, prune=..., keep_model_ids=policy.keep)  # one list of pools
    # make_plan(..., pools=plan.changes, pool_models=plan.managed_models): the prune guard counts their models
    outcomes = runner.reconcile(plan, revision=rev, dry_run=..., prune=not guard_tripped, ...)  # before the apply
    # pools.gate(outcome, nodes, ready_nodes) holds the model's Workspace until its pool's Nodes are Ready;
    # outcome.state/code/message go to the model's outcome and status (pools.pool_summary).

Importing this package does not import the Azure SDK; `aks` and `provisioner` do.
"""
