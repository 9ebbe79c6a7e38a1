#!/bin/sh
# Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d).
# POSTGRES_DB (dagster) already exists; MLflow, Optuna, the prediction log, the control
# plane (tokens, promotion requests, audit log) and Feast's registry each get a database of their own: MLflow and Optuna both keep an alembic_version table and cannot
# share one (see README, dependency notes).
set -eu
for database in mlflow optuna prediction_log control feast; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -c "CREATE DATABASE \"$database\" OWNER \"$POSTGRES_USER\""
done
