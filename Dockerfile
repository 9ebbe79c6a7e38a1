# One image for every process of the stack that runs the project's code: the Dagster code
# location (gRPC code server, where the runs run), dagster-webserver, dagster-daemon, the
# MLflow server, the predictions Bento and the /ask service (docker-compose.yml).
# Dependencies come from requirements/documents.txt, the lock of the documents role (core platform, serving
# and the documents pipeline; requirements/README.md), checked the same way as the Makefile's venv. The
# predictions Bento built from this image's source tree installs only requirements/serving.txt.
FROM python:3.11-slim

ENV DO_NOT_TRACK=1 \
    GX_ANALYTICS_ENABLED=False \
    DAGSTER_DISABLE_TELEMETRY=1 \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    TRACSEQ_DATA_DIR=/data \
    BENTOML_HOME=/data/bentoml
WORKDIR /opt/tracseq

# OCR of scanned PDF pages (documents pipeline): tesseract and poppler's pdftoppm, as in
# the Makefile's system-deps.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng poppler-utils \
 && rm -rf /var/lib/apt/lists/*

# The documents lock pins torch 2.13.0+cpu, which the development machines install from a local wheel.
# Here it comes from PyTorch's CPU index, alone and first: with that index beside PyPI for the
# whole lock, pip would ask it for every package and prefer its `+cpu` builds of other pins
# (torchvision). PyPI's torch would be the multi-GB CUDA build.
# --no-deps: torch's own dependencies are pinned in the lock and come from PyPI.
COPY requirements ./requirements
RUN python -m pip install --no-cache-dir pip==25.3 \
 && pip install --no-cache-dir --no-deps --index-url https://download.pytorch.org/whl/cpu \
        "$(grep -m1 '^torch==' requirements/documents.txt)" \
 && pip install --no-cache-dir -r requirements/documents.txt

# Editable, like the Makefile: the Bento build (tracseq_dagster/serving/bento_build.py)
# builds from the source tree, which must hold bentos/, requirements/serving.txt and the package.
COPY pyproject.toml README.md ./
COPY scripts/check_environment.py ./scripts/
COPY tracseq_dagster ./tracseq_dagster
COPY assets ./assets
COPY resources ./resources
COPY bentos ./bentos
COPY compose/serve-predictions.sh ./compose/
COPY workspace.yaml workspace.compose.yaml ./
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e . \
 && python scripts/check_environment.py documents

# Not root. The mount points of the named volumes exist here with this owner, so Docker
# initialises fresh volumes writable by it.
RUN useradd --uid 10001 --create-home tracseq \
 && mkdir -p $DAGSTER_HOME/storage /data/landing /data/lake /data/documents /data/lancedb /data/bentoml /mlflow/artifacts \
 && chown -R tracseq:tracseq $DAGSTER_HOME /data /mlflow
COPY dagster.yaml $DAGSTER_HOME/dagster.yaml
USER tracseq

EXPOSE 4000 3000 5000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "tracseq_dagster.definitions"]
