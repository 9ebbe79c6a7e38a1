"""The control plane: who may do what (tokens, roles, policy), what was done (audit), promotion
approvals, and the management API over them. Pure domain code: no Dagster import here (a
retraining is launched through Dagster's GraphQL client, imported where it is used)."""
