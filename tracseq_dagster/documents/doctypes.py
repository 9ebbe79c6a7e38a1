"""Which kind of lab document a file is: the filter ``--type`` of retrieval uses these.

Decided from the folder and file name first (labs file SOPs under ``sops/``, name forms
``…submission…``), then from the first page's words. Deterministic and cheap: it runs on
every document and its result is stored with every chunk.
"""

from __future__ import annotations

import re

DOCUMENT_TYPES: tuple[str, ...] = ("sop", "report", "submission_form", "other")

_NAME_RULES: tuple[tuple[str, str], ...] = (
    ("submission_form", r"submission|sample[-_ ]?form|intake"),
    ("sop", r"(^|[/_\- ])sops?([/_\- .]|$)|standard[-_ ]operating|procedure"),
    ("report", r"report|(^|[/_\- ])qc[-_ ]|summary"),
)
_TEXT_RULES: tuple[tuple[str, str], ...] = (
    ("submission_form", r"sample submission form|submitter\s*:|requested service\s*:"),
    ("sop", r"standard operating procedure|\bSOP[- ]\d+"),
    ("report", r"\breport\b"),
)


def classify_document(path: str, first_page_text: str = "") -> str:
    """One of DOCUMENT_TYPES for the file at ``path`` with this text on its first page."""
    # The folder and the file name only: a landing folder's own path says nothing about a file.
    name = "/".join(path.replace("\\", "/").lower().split("/")[-2:])
    for kind, pattern in _NAME_RULES:
        if re.search(pattern, name):
            return kind
    for kind, pattern in _TEXT_RULES:
        if re.search(pattern, first_page_text, flags=re.IGNORECASE):
            return kind
    return "other"
