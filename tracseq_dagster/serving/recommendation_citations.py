"""The SOP passages behind each recommendation of an answer, served from the Bento's own file.

When the lab's SOPs are indexed at build time, the Bento's bundle holds ``sop_citations.json``
(written by :mod:`tracseq_dagster.documents.citation_pack`): for each recommendation kind (the
risk factor a recommendation answers), the SOP passages that tell the technician what to do,
with file and page, retrieved once per kind from the index version named in the file.

Why a file and not a lookup at serve time: the prediction service's environment
(requirements/serving.txt) has no torch, sentence-transformers or LanceDB (issue 20), and a
retrieval costs tens of milliseconds, several times a prediction. So retrieval happens where the
documents environment is, when the Bento is built, and the service pays a dictionary lookup per
risk factor. The file's content hash is part of the Bento's version, so new SOPs make a new
Bento (and new cache keys); until then the citations are those of the index version in the file.

An answer then carries ``recommendation_citations``: one list per entry of ``recommendations``,
in the same order, each a list (possibly empty) of ``{"citation": "SOP-014-….pdf, p. 2",
"file_name", "page_start", "page_end", "text"}``. Without the file (no SOPs indexed, or no
documents environment where the Bento was built) answers are exactly as before: no such field.

This module imports nothing beyond the standard library and the serving package.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracseq_dagster.serving.predictor import Answer

CITATIONS_FILE = "sop_citations.json"
CITATIONS_FORMAT = 1
FIELD = "recommendation_citations"

#: A model's ``recommend``: risk-factor feature names, the request row and its features -> actions.
Recommend = Callable[[list[str], Mapping[str, Any], Mapping[str, Any]], list[str]]


class CitationFileError(ValueError):
    """The packed citations file is unreadable: the Bento was built wrong (named with the file)."""


@dataclass(frozen=True)
class PackedCitations:
    """The citations of one Bento: kind -> passages, and what they were retrieved from."""

    kinds: Mapping[str, tuple[dict[str, Any], ...]]
    index_version: int | None
    digest: str  # of the file's bytes: part of the Bento's version and of the answer cache's keys

    @classmethod
    def load(cls, bundle_dir: str | Path) -> PackedCitations | None:
        """The bundle's citations; None without a file or when it cites nothing (answers unchanged)."""
        path = Path(bundle_dir) / CITATIONS_FILE
        if not path.exists():
            return None
        raw = path.read_bytes()
        try:
            data = json.loads(raw)
            if data.get("format") != CITATIONS_FORMAT:
                raise CitationFileError(f"{path}: format {data.get('format')!r}, this service reads {CITATIONS_FORMAT}")
            kinds = {str(kind): tuple(dict(c) for c in found) for kind, found in data["kinds"].items() if found}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise CitationFileError(f"{path}: not a citations file ({error})") from error
        if not kinds:
            return None
        version = data.get("index_version")
        return cls(kinds, None if version is None else int(version), hashlib.sha256(raw).hexdigest()[:8])

    def summary(self) -> dict[str, Any]:
        """What ``GET /model`` and ``GET /models/{name}`` may say about them."""
        return {"index_version": self.index_version, "digest": self.digest, "kinds": sorted(self.kinds)}

    def for_answer(self, response: Mapping[str, Any], record: Mapping[str, Any], features: Mapping[str, Any],
                   recommend: Recommend | None) -> list[list[dict[str, Any]]]:  # fmt: skip
        """One list of citations per recommendation of ``response``, in its order.

        A recommendation's citations are those of the risk factors that led to it: each factor
        with citations is worded alone (``recommend([factor], …)``), which says which of the
        answer's recommendations it produced. Factors without citations cost nothing.
        """
        recommendations: Sequence[str] = response.get("recommendations") or ()
        by_text: dict[str, list[dict[str, Any]]] = {text: [] for text in recommendations}
        if recommend is not None:
            for factor in response.get("risk_factors") or ():
                feature = factor["feature"] if isinstance(factor, Mapping) else str(factor)
                cited = self.kinds.get(feature)
                if not cited:
                    continue
                for text in recommend([feature], record, features):
                    found = by_text.get(text)
                    if found is not None:
                        found.extend(c for c in cited if c not in found)
        return [by_text[text] for text in recommendations]

    def attach(self, answers: list[Answer], records: Sequence[Mapping[str, Any]], recommend: Recommend | None) -> list[Answer]:
        """``answers`` (one per record, in order) with :data:`FIELD` in each response.

        The features a recommendation is worded from are in the answer's log row (every
        feature of the model is logged).
        """
        return [
            Answer({**a.response, FIELD: self.for_answer(a.response, record, a.log_row, recommend)}, a.log_row)
            for a, record in zip(answers, records, strict=True)
        ]


def citing(predict: Callable[..., list[Answer]], citations: PackedCitations | None,
           recommend: Recommend | None) -> Callable[..., list[Answer]]:  # fmt: skip
    """``predict`` (records first) whose answers carry the citations; ``predict`` itself without any."""
    if citations is None:
        return predict

    def predict_citing(records: list[dict[str, Any]], *args: Any, **kwargs: Any) -> list[Answer]:
        return citations.attach(predict(records, *args, **kwargs), records, recommend)

    return predict_citing


def cite_catalog(models: Mapping[str, Any], citations: PackedCitations | None) -> None:
    """Every served catalog model's ``predict`` citing (ServedCatalog.models), in place; nothing without citations.

    The answers are built by the catalog's predictors (catalog_predictor.py); the citations are
    added to what they return, per model instance, so that their code and every route that
    calls ``predict`` (JSON, batch, columnar) stay as they are.
    """
    if citations is None:
        return
    for model in models.values():
        model.predict = citing(model.predict, citations, model.spec.serving.recommend)
