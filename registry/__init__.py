"""MLflow registration and lineage, bundles (sign, encrypt), manifests, cohorts and rollouts."""
