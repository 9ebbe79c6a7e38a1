"""Dagster definitions grouped by domain, one package each (lab_exports, features, models,
training, serving, monitoring, documents): that domain's assets, checks, jobs, sensors and
schedules, thin over the domain code in ``tracseq_dagster``. Each package exposes ``defs``;
``tracseq_dagster.definitions`` merges them and adds the resources."""
