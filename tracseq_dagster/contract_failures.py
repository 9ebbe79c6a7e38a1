"""Why the blocking check on accepted rows failed, in one message a lab person can act on.

The blocking check ``accepted_rows_meet_contract`` re-runs the Great Expectations suite on the
rows the row-level rules accepted, and checks the kind's key (``sample_id``; a run export's
``run_id,sample_id``) across every accepted export of that kind. It
fails only when something slipped past the quarantine: a row rule and its GX rendering
disagree, or two exports holding the same ``sample_id`` were accepted at the same moment (two
runs each read the accepted ids before the other wrote its rows). Either way Dagster alone
would say "1 blocking asset check failed"; :func:`explain_contract_failure` says which file,
which rule and column, and which lines, as the parser's errors do
(``{file}: line(s) …, column …: …``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.contract import ROW_NUMBER, SAMPLE_CONTRACT, SOURCE_FILE
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.rules import RuleContext, fmt_value, key_index, line_labels, rule_by_name

#: Lines named per failure; the check's metadata and the quarantine hold the rest.
MAX_LINES = 5


@dataclass(frozen=True)
class CheckFailure:
    """One reason the check failed: a rule on a column, its rows in this export, what was wrong."""

    rule: str
    column: str | None
    rows: int | None  # offending rows (None: the suite did not say)
    lines: tuple[int, ...]  # the first offending lines of this export
    detail: str  # what was wrong, with example values
    fix: str

    def describe(self, source: str) -> str:
        where = []
        if self.lines:
            shown = ", ".join(str(line) for line in self.lines)
            more = f" (of {self.rows} rows)" if self.rows is not None and self.rows > len(self.lines) else ""
            where.append(f"{'line' if len(self.lines) == 1 else 'lines'} {shown}{more}")
        if self.column:
            where.append(f"column {self.column}")
        return f"{source}: {', '.join(where)}: rule {self.rule}: {self.detail}"

    def as_record(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "column": self.column,
            "rows": self.rows,
            "lines": ", ".join(map(str, self.lines)),
            "detail": self.detail,
        }


def explain_contract_failure(
    source: str,
    accepted: pd.DataFrame,
    per_export_results: Sequence[dict[str, Any]],
    others: pd.DataFrame,
    *,
    now: pd.Timestamp | None = None,
    contract: ExportContract = SAMPLE_CONTRACT,
) -> list[CheckFailure]:
    """Every reason the check failed for the export ``source`` of the kind ``contract``.

    ``accepted``: the export's accepted rows (with ``_row_number``; for a run export joined with
    the samples' facts, as the suite saw them); ``per_export_results``: the
    GX results of the suite on them (:class:`~tracseq_dagster.expectations.GXRunSummary`
    ``.results``); ``others``: the key columns (``sample_id``; and where known ``_source_file``,
    ``_row_number``) of the rows accepted from every other current export of the same kind.
    """
    failures = [_rule_failure(accepted, result, now, contract) for result in per_export_results if not result["success"]]
    duplicate = _duplicates_across_exports(accepted, others, contract.key_columns)
    if duplicate is not None:
        failures.append(duplicate)
    return failures


def failure_message(source: str, failures: Sequence[CheckFailure], check_name: str) -> str:
    """The whole explanation: the first failures in full, then a count of the rest."""
    held = f"blocking check {check_name} failed: the export's accepted rows are held back from features"
    if not failures:
        return f"{source}: {held}; the suite failed without naming a rule (see the check's Data Docs)"
    shown = [f.describe(source) for f in failures[:3]]
    rest = f" (and {len(failures) - 3} more failed rules in the check's metadata)" if len(failures) > 3 else ""
    fixes = "; ".join(dict.fromkeys(f.fix for f in failures[:3]))
    return " | ".join(shown) + rest + f" ({held}). Fix: {fixes}"


# -- one rule of the suite ------------------------------------------------------------------------
_RULE_FIX = (
    "the row-level rules accepted rows the Great Expectations suite rejects (a defect of the rule, "
    "tracseq_dagster.rules): correct these lines and drop the file again, and report the rule"
)


def _rule_failure(
    accepted: pd.DataFrame, result: dict[str, Any], now: pd.Timestamp | None, contract: ExportContract
) -> CheckFailure:
    name = result.get("rule") or result.get("expectation_type") or "?"
    column = result.get("column")
    count = result.get("unexpected_count")
    rule = rule_by_name(contract).get(name)
    lines: list[int] = []
    detail = ""
    if rule is not None:
        # The rule's own pandas rendering names the rows and the values, when it sees them.
        try:
            ctx = RuleContext.for_frame(accepted, now=now)
            positions = np.flatnonzero(rule.mask(accepted, ctx))
        except Exception:  # noqa: BLE001 - an explanation must never hide the failure itself
            positions = np.array([], dtype=np.int64)
        if len(positions):
            first = positions[:MAX_LINES]
            lines = line_labels(accepted)[first].tolist()
            detail = "; ".join(rule.messages(accepted, first[:2], ctx))
            count = len(positions) if count is None else count
    if not lines:
        lines, detail = _lines_from_gx_result(accepted, result)
    return CheckFailure(name, column, count, tuple(int(x) for x in lines), detail or _gx_detail(result), _RULE_FIX)


def _lines_from_gx_result(accepted: pd.DataFrame, result: dict[str, Any]) -> tuple[list[int], str]:
    """Lines of the rows holding the values GX listed, or for a type check, the empty cells."""
    column = result.get("column")
    if not column or column not in accepted.columns:
        return [], ""
    series = accepted[column]
    values = result.get("partial_unexpected_list") or []
    if values:
        wanted = {str(v) for v in values}
        mask = series.astype(str).isin(wanted).to_numpy()
        detail = f"unexpected values {', '.join(fmt_value(v) for v in values[:3])}"
    elif result.get("expectation_type") == "expect_column_values_to_be_of_type":
        # The usual cause: empty cells turned an integer column into floats (or text).
        mask = series.isna().to_numpy()
        detail = f"the accepted column {column} is {result.get('observed_value') or series.dtype}, not the contract's type" + (
            ", because of its empty cells" if mask.any() else ""
        )
    else:
        return [], ""
    positions = np.flatnonzero(mask)[:MAX_LINES]
    return line_labels(accepted)[positions].tolist(), detail


def _gx_detail(result: dict[str, Any]) -> str:
    parts = [str(result.get("expectation_type") or "expectation") + " failed"]
    if result.get("unexpected_count") is not None:
        parts.append(f"{result['unexpected_count']} unexpected values")
    if result.get("observed_value") is not None:
        parts.append(f"observed {fmt_value(result['observed_value'])}")
    if result.get("exception"):
        parts.append(f"error {result['exception']}")
    return ", ".join(parts)


# -- the key across exports ------------------------------------------------------------------------
def _duplicates_across_exports(accepted: pd.DataFrame, others: pd.DataFrame, key: Sequence[str]) -> CheckFailure | None:
    if any(c not in accepted.columns for c in key) or others.empty:
        return None
    ids = key_index(accepted, key)
    other_ids = key_index(others, key)
    present = np.ones(len(accepted), dtype=bool)
    for c in key:
        present &= accepted[c].notna().to_numpy()
    clash = np.asarray(ids.isin(other_ids[~_any_missing(others, key)])) & present
    positions = np.flatnonzero(clash)
    label = ",".join(key)
    rule = f"unique_across_exports:{label}"
    fix = (
        "two exports with these ids were accepted at the same moment: re-ingest this file "
        "(tracseq ingest --force) to quarantine them, or correct the ids in one of the files"
    )
    if len(positions) == 0:
        # Nothing of this export clashes: ids were already duplicated between other exports.
        counts = pd.Series(1, index=other_ids).groupby(level=list(range(len(key)))).size()
        repeated = counts[counts > 1]
        if repeated.empty:
            return None
        examples = [f"{_shown(k)} in {_where(others, key, k)}" for k in repeated.index[:2]]
        return CheckFailure(
            rule,
            label,
            int(repeated.sum()),
            (),
            f"{label} accepted twice by other exports: " + "; ".join(examples),
            "re-ingest one of those files (tracseq ingest --force) to quarantine the second copy",
        )
    first = positions[:MAX_LINES]
    lines = line_labels(accepted)[first].tolist()
    examples = [f"{_shown(ids[p])} also accepted from {_where(others, key, ids[p])}" for p in first[:2]]
    return CheckFailure(rule, label, len(positions), tuple(int(x) for x in lines), "; ".join(examples), fix)


def _any_missing(frame: pd.DataFrame, key: Sequence[str]) -> np.ndarray:
    return frame[list(key)].isna().any(axis=1).to_numpy()


def _shown(value: Any) -> str:
    """A key as messages name it: the id itself, or its parts joined by '/'."""
    return "/".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def _where(others: pd.DataFrame, key: Sequence[str], value: Any) -> str:
    parts = value if isinstance(value, tuple) else (value,)
    match = np.ones(len(others), dtype=bool)
    for c, v in zip(key, parts):
        match &= (others[c].astype("string") == str(v)).fillna(False).to_numpy(dtype=bool)
    rows = others[match]
    if SOURCE_FILE not in rows.columns:
        return "another export"
    places = []
    for _, row in rows.head(2).iterrows():
        place = PurePosixPath(str(row[SOURCE_FILE])).name
        if ROW_NUMBER in rows.columns and pd.notna(row[ROW_NUMBER]):
            place += f" line {int(row[ROW_NUMBER])}"
        places.append(place)
    return " and ".join(places)
