#!/bin/sh
# Command of the predictions service: serve the newest prediction Bento in
# $BENTOML_HOME (the volume the code location builds into). A fresh stack has none until
# a model is trained, promoted and packaged: wait for it, saying so, instead of crash-looping.
set -eu
until python -c "import sys; from tracseq_dagster.serving.bento_build import BENTO_NAME, bentoml; sys.exit(0 if bentoml.bentos.list(BENTO_NAME) else 1)"; do
    echo "no prediction Bento in $BENTOML_HOME yet: train and promote a model, then package it (docs/operations.md, 'First model'); checking again in 30 s"
    sleep 30
done
exec tracseq bento serve --host 0.0.0.0 --port 3000
