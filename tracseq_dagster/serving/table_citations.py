"""The SOP citations of a columnar answer table (``POST /fast/batch_predict``), kept off its per-row path.

The columnar route exists to answer without per-row Python (serving/columnar.py), so its
citations do not cost a row each:

- **Side table, always** (when the Bento packed citations): the answer table's schema metadata
  ``sop_citations`` holds JSON ``{kind: [passage, …]}`` for the recommendation kinds among the
  table's ``risk_factor_<i>`` columns (a risk factor *is* the kind of its recommendation), each
  passage as in ``/predict``'s ``recommendation_citations`` (``citation``, ``file_name``,
  ``page_start``, ``page_end``, ``text``). Found with one ``unique`` per factor column (dictionary
  codes hashed by Arrow), whatever the number of rows.
- **Aligned column, with** ``?recommendations=text``: those answers word their recommendations
  per row already, so they also get ``recommendation_citations``, a ``list<list<struct>>`` column
  aligned with ``recommendations`` (one list per recommendation, possibly empty) of
  ``{citation, file_name, page_start, page_end}``; the passage text is in the side table
  (repeating it on every row would multiply the answer's size). The alignment is
  :meth:`PackedCitations.for_answer`'s, the one ``/predict`` uses, on the plain records and
  feature values ``predict_table`` worded the recommendations from (``TableAnswers.worded_from``),
  so no row is converted twice; only rows with a cited risk factor are looked at.

Without packed citations the table is returned as it was: no metadata key, no column.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from tracseq_dagster.features import FEATURE_NAMES
from tracseq_dagster.serving.advice import top_risk_factors
from tracseq_dagster.serving.columnar import TableAnswers
from tracseq_dagster.serving.recommendation_citations import FIELD, PackedCitations, Recommend

METADATA_KEY = "sop_citations"
_PASSAGE = pa.struct([("citation", pa.string()), ("file_name", pa.string()), ("page_start", pa.int32()),
                      ("page_end", pa.int32())])  # fmt: skip
COLUMN_TYPE = pa.list_(pa.list_(_PASSAGE))


def cited_kinds(table: pa.Table, citations: PackedCitations) -> dict[str, list[dict[str, Any]]]:
    """The packed passages of every kind named in the table's ``risk_factor_<i>`` columns."""
    kinds: set[str] = set()
    for name in table.column_names:
        if name.startswith("risk_factor_"):  # dictionary-encoded: unique() hashes codes, no string per row
            kinds.update(kind for kind in table.column(name).unique().to_pylist() if kind is not None)
    return {kind: list(citations.kinds[kind]) for kind in sorted(kinds) if kind in citations.kinds}


def cite_table(answers: TableAnswers, table: pa.Table, citations: PackedCitations | None, recommend: Recommend) -> pa.Table:
    """``table`` (``answers.table(…)``) with its citations: the side table, and the column when worded."""
    if citations is None:
        return table
    side = cited_kinds(table, citations)
    if answers.recommendations is not None:
        table = table.append_column(pa.field(FIELD, COLUMN_TYPE), _aligned(answers, citations, recommend))
    metadata = {**(table.schema.metadata or {}), METADATA_KEY.encode(): json.dumps(side, ensure_ascii=False).encode()}
    return table.replace_schema_metadata(metadata)


def _aligned(answers: TableAnswers, citations: PackedCitations, recommend: Recommend) -> pa.Array:
    """Per request row, one list of passages (no text) per recommendation; worded again only where a factor is cited."""
    assert answers.recommendations is not None and answers.worded_from is not None  # predict_table sets both
    factor, _ = top_risk_factors(answers.contributions)
    cited_codes = np.asarray([FEATURE_NAMES.index(k) for k in citations.kinds if k in FEATURE_NAMES], dtype=np.intp)
    needed = np.flatnonzero(np.isin(factor, cited_codes).any(axis=1))  # distinct rows with a cited factor
    per_distinct: list[list[list[dict[str, Any]]]] = [[[] for _ in texts] for texts in answers.recommendations]
    records, vectors = answers.worded_from  # what predict_table worded them from: not converted twice
    for i in needed.tolist():
        response: Mapping[str, Any] = {
            "risk_factors": [FEATURE_NAMES[j] for j in factor[i].tolist() if j >= 0],
            "recommendations": answers.recommendations[i],
        }
        found = citations.for_answer(response, records[i], vectors[i], recommend)
        per_distinct[i] = [[{k: c[k] for k in ("citation", "file_name", "page_start", "page_end")} for c in passages]
                           for passages in found]  # fmt: skip
    return pa.array([per_distinct[r] for r in answers.valid.rows.tolist()], COLUMN_TYPE)
