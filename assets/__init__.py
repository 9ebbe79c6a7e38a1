"""Software-defined assets: thin wrappers over the domain modules in tracseq_dagster."""
