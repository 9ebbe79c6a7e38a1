# One image for the code location, the webserver and the daemon, from the same lock as the Makefile.
FROM python:3.11-slim
ENV DO_NOT_TRACK=1 GX_ANALYTICS_ENABLED=False PYTHONUNBUFFERED=1 DAGSTER_HOME=/opt/dagster/home
WORKDIR /opt/tracseq
# OCR of scanned PDF pages (documents pipeline): tesseract and poppler's pdftoppm.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng poppler-utils \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY tracseq_dagster ./tracseq_dagster
COPY assets ./assets
COPY resources ./resources
COPY bentos ./bentos
COPY workspace.yaml workspace.compose.yaml ./
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
 && mkdir -p $DAGSTER_HOME
COPY dagster.yaml $DAGSTER_HOME/dagster.yaml
EXPOSE 4000 3000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "tracseq_dagster.definitions"]
