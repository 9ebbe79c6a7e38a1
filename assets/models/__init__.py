"""The catalog's models in the code location: their partitions (one per model, one per model and
family), read from :mod:`tracseq_dagster.models` when the code location loads. The training,
serving and monitoring domains partition their assets with them."""
