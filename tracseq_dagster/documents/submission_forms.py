"""Sample submission forms into validated rows: one per sample, with the form's fields.

The lab's own template (``TracSeq Sample Submission Form``, see ``examples``) is read by a
deterministic parser: labelled fields and one ``ID | type | volume | concentration`` line
per sample. Any other submission (an e-mail, a collaborator's own form) goes to Ollama with
a JSON schema in ``format`` so the reply has exactly the fields below; without Ollama such a
document is reported as not extracted, never guessed.

Rows are checked with the lab export contract's rules for the columns they share
(sample id pattern, sample type, volume > 0, concentration >= 0, ids unique), so a sample
id here means the same as in ``validated_samples`` and the two join on ``sample_id``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tracseq_dagster.contract import COLUMN_BY_NAME, ContractColumn
from tracseq_dagster.documents.llm import OllamaChat

TEMPLATE_MARKER = "TracSeq Sample Submission Form"
FORM_FIELDS: dict[str, str] = {
    "submitter": r"submitter",
    "principal_investigator": r"principal investigator|\bPI\b",
    "project_id": r"project",
    "requested_service": r"requested service|service",
    "date_submitted": r"date submitted|submitted on|date",
}
SAMPLE_FIELDS: tuple[str, ...] = ("sample_id", "sample_type", "volume_ul", "concentration_ng_ul")
_ROW = re.compile(
    r"(?P<sample_id>TS-\d{4}-\d{6})\s*\|\s*(?P<sample_type>[A-Za-z]+)\s*\|\s*(?P<volume_ul>[-\d.,]+)\s*\|\s*(?P<concentration_ng_ul>[-\d.,]+)"
)

# What Ollama must return for a free-form submission (structured outputs).
EXTRACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **{name: {"type": ["string", "null"]} for name in FORM_FIELDS},
        "samples": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sample_id": {"type": "string"},
                    "sample_type": {"type": ["string", "null"]},
                    "volume_ul": {"type": ["number", "null"]},
                    "concentration_ng_ul": {"type": ["number", "null"]},
                },
                "required": list(SAMPLE_FIELDS),
            },
        },
    },
    "required": [*FORM_FIELDS, "samples"],
}
EXTRACTION_PROMPT = (
    "Extract the sample submission in this document as JSON with the given schema. Use null "
    "for anything the document does not state; never invent values. Volumes in microlitres, "
    "concentrations in ng/uL, dates as YYYY-MM-DD.\n\nDocument:\n"
)


@dataclass
class Extraction:
    method: str  # "template", "ollama" or "none"
    fields: dict[str, str | None] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def _number(text: Any) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(str(text).replace(",", "."))
    except ValueError:
        return None


def is_template(text: str) -> bool:
    return TEMPLATE_MARKER.lower() in text.lower()


def parse_template(text: str) -> Extraction:
    """The lab's own form: ``Label: value`` lines and ``ID | type | volume | conc`` rows."""
    fields: dict[str, str | None] = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if not sep:
            continue
        for name, pattern in FORM_FIELDS.items():
            if name not in fields and re.fullmatch(rf"\s*({pattern})\s*", label, flags=re.IGNORECASE):
                fields[name] = value.strip() or None
    samples = [
        {
            "sample_id": m["sample_id"],
            "sample_type": m["sample_type"],
            "volume_ul": _number(m["volume_ul"]),
            "concentration_ng_ul": _number(m["concentration_ng_ul"]),
        }
        for m in _ROW.finditer(text)
    ]
    return Extraction("template", {name: fields.get(name) for name in FORM_FIELDS}, samples)


def extract_with_ollama(text: str, chat: OllamaChat) -> Extraction:
    """Free-form submission through Ollama's structured outputs (raises OllamaUnavailable)."""
    reply = chat.chat_json([{"role": "user", "content": EXTRACTION_PROMPT + text}], EXTRACTION_SCHEMA)
    try:
        data = json.loads(reply)
    except json.JSONDecodeError:
        return Extraction("ollama", note=f"the model's reply is not JSON: {reply[:120]!r}")
    samples = [
        {
            "sample_id": str(s.get("sample_id") or "").strip(),
            "sample_type": s.get("sample_type"),
            "volume_ul": _number(s.get("volume_ul")),
            "concentration_ng_ul": _number(s.get("concentration_ng_ul")),
        }
        for s in data.get("samples") or []
        if isinstance(s, dict)
    ]
    return Extraction("ollama", {name: data.get(name) for name in FORM_FIELDS}, samples)


def _violation(column: ContractColumn, value: Any) -> str | None:
    """The contract rule ``value`` breaks for ``column``, if any."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return f"{column.name} is missing" if column.required else None
    if column.pattern and not re.fullmatch(column.pattern, str(value)):
        return f"{column.name} {value!r} does not match {column.pattern}"
    if column.allowed and value not in column.allowed:
        return f"{column.name} {value!r} is not one of {', '.join(column.allowed)}"
    too_small = (
        column.minimum is not None
        and isinstance(value, (int, float))
        and (value < column.minimum or (column.exclusive_minimum and value == column.minimum))
    )
    if too_small:
        return f"{column.name} {value:g} must be {'>' if column.exclusive_minimum else '>='} {column.minimum:g}"
    if column.maximum is not None and isinstance(value, (int, float)) and value > column.maximum:
        return f"{column.name} {value:g} must be <= {column.maximum:g}"
    return None


def _canonical_type(value: Any) -> Any:
    allowed = COLUMN_BY_NAME["sample_type"].allowed or ()
    return next((a for a in allowed if isinstance(value, str) and a.lower() == value.strip().lower()), value)


def submission_rows(extraction: Extraction, *, document_id: str, source: str) -> pd.DataFrame:
    """One row per sample with the form's fields and ``violations`` ('' when valid)."""
    rows = []
    seen: set[str] = set()
    for sample in extraction.samples:
        row = {**extraction.fields, **sample, "sample_type": _canonical_type(sample.get("sample_type"))}
        if row.get("project_id") is None:
            row["project_id"] = extraction.fields.get("project_id")
        problems = [
            v
            for name in ("sample_id", "project_id", "sample_type", "volume_ul", "concentration_ng_ul")
            if (v := _violation(COLUMN_BY_NAME[name], row.get(name)))
        ]
        if row["sample_id"] in seen:
            problems.append(f"sample_id {row['sample_id']} appears twice in the form")
        seen.add(row["sample_id"])
        rows.append(
            {**row, "document_id": document_id, "source": source, "method": extraction.method, "violations": "; ".join(problems)}
        )
    columns = [*FORM_FIELDS, *SAMPLE_FIELDS, "document_id", "source", "method", "violations"]
    return pd.DataFrame(rows, columns=columns)


def join_validated_samples(submissions: pd.DataFrame, validated: pd.DataFrame) -> pd.DataFrame:
    """Submitted samples beside what the LIMS export says about them (left join on sample_id)."""
    return submissions.merge(validated, on="sample_id", how="left", suffixes=("", "_lims"))
