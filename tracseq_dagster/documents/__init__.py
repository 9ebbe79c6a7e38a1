"""Lab documents: parse, chunk, embed, index, retrieve and answer with page citations.

One concept per module; the Dagster assets, the CLI and the Bento service all import these:

- ``environment``: offline set-up of unstructured (spaCy model from PyPI, no telemetry).
- ``parsing``: a file into typed elements with page numbers (fast strategy, OCR fallback).
- ``doctypes``: which kind of lab document a file is (SOP, report, submission form, ...).
- ``normalise``: text as people type it (ligatures, cid codes, line-end hyphens), both sides.
- ``headings``: which titles are headings, and the heading path (optional in chunking).
- ``chunking``: elements into title-bounded chunks with page spans and stable ids.
- ``embedding``: texts into vectors (offline MiniLM, or an Ollama embedding model).
- ``index``: the LanceDB table: merge by chunk id, full-text and ANN indexes.
- ``retrieval``: hybrid search (vector + full text, reciprocal rank fusion) with filters.
- ``evidence``: whether the best passages hold the question's rare words (refusals).
- ``term_store``: the index's term statistics, counted at ingest and stored beside it.
- ``learned_rerank``: fused candidates re-ordered by a logistic model trained here (the product's).
- ``rerank``: fused candidates re-scored by their rare-term coverage (the earlier reranker, compared).
- ``verdict``: the model's JSON-schema judgement of the passages, checked against them.
- ``sop_citations``: the SOP passages behind a bench recommendation, cached per index version.
- ``llm``: the Ollama client, with its failures turned into one clear line and a fix.
- ``answering``: grounded answers with file/page citations, or retrieval only.
- ``submission_forms``: structured fields of sample submission forms, validated.
- ``store``: where chunk tables live in the lake.
- ``ingest``: a folder of documents through Dagster without a UI (the CLI's path).
- ``pdf`` and ``examples``: a minimal PDF writer and the example lab documents.
"""
