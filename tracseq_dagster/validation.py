"""Row-level validation of one lab export: split rows into valid and quarantined, with reasons.

Every rule comes from :mod:`tracseq_dagster.rules` (the same definitions the Great
Expectations suite is built from), evaluated with its vectorised pandas rendering. A row that
breaks any rule is quarantined; the quarantined frame keeps all its original columns plus
``_rules`` (the broken rule names, ``;``-joined) and ``_reasons`` (one message per broken rule,
``"; "``-joined, each naming the field and its value). ``violations`` is the long form: one row
per broken rule per input row.

The input is a typed sample frame (the parser's convention: contract columns, extra columns,
then ``_file_hash``, ``_source_file``, ``_row_number``) for ONE export. ``parse_issues`` are the
parser's cells that could not be typed; each becomes a ``type:<column>`` violation of its row
(matched on ``_row_number``, and ``_source_file`` when both frames have it).
``known_sample_ids`` are the ids already accepted from other exports.

Other export kinds go through the same function with their ``contract`` (default: the sample
contract): a run export passes ``known_keys`` (its accepted (``run_id``, ``sample_id``) pairs)
and ``accepted_samples`` (``sample_id``, ``received_ts`` of the accepted samples) for its
``unknown_sample`` and ``after_receipt`` rules.

Performance: every rule is a vectorised mask; Python only runs over violating rows to build
their messages. A clean 1,000,000-row export validates in a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tracseq_dagster.contract import ROW_NUMBER, SAMPLE_CONTRACT, SOURCE_FILE
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.rules import SAMPLE_ID, Rule, RuleContext, rules_for, with_contract_dtypes

RULES_COLUMN = "_rules"
REASONS_COLUMN = "_reasons"
VIOLATION_COLUMNS: tuple[str, ...] = (SOURCE_FILE, ROW_NUMBER, SAMPLE_ID, "rule", "column", "message")


@dataclass
class ValidationResult:
    """The outcome of :func:`validate_samples`.

    ``valid``: rows that pass every rule, same columns (and index labels) as the input, contract
    columns in the typed frame's dtypes (``Int64`` ints even if the input had float64).
    ``quarantined``: every rejected row once, all original columns + ``_rules`` + ``_reasons``.
    ``violations``: long form, one row per broken rule per row
    (``_source_file``, ``_row_number``, ``sample_id``, ``rule``, ``column``, ``message``).
    ``rule_counts``: rule name -> number of rows breaking it, for every rule (0 included).
    """

    valid: pd.DataFrame
    quarantined: pd.DataFrame
    violations: pd.DataFrame
    rule_counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.valid) + len(self.quarantined)

    @property
    def failed_rules(self) -> dict[str, int]:
        """Only the rules that at least one row broke."""
        return {k: v for k, v in self.rule_counts.items() if v}


def validate_samples(
    frame: pd.DataFrame,
    parse_issues: pd.DataFrame | None = None,
    known_sample_ids: Iterable[str] | pd.Index | None = None,
    *,
    now: pd.Timestamp | None = None,
    rules: Iterable[Rule] | None = None,
    contract: ExportContract = SAMPLE_CONTRACT,
    known_keys: pd.Index | None = None,
    accepted_samples: pd.DataFrame | None = None,
) -> ValidationResult:
    """Validate one typed export frame against every rule of ``contract``.

    ``now`` (default: the current time) is the clock for ``plausible_date:<col>``; ``rules``
    (default: every rule of the contract, :func:`tracseq_dagster.rules.rules_for`) lets a
    caller evaluate a subset. Nothing is lost: ``len(valid) + len(quarantined) == len(frame)``.
    """
    rules = tuple(rules_for(contract) if rules is None else rules)
    n = len(frame)
    ctx = RuleContext.for_frame(
        frame,
        now=now,
        known_sample_ids=known_sample_ids,
        known_keys=known_keys,
        parse_issues=parse_issues,
        accepted_samples=accepted_samples,
    )

    positions: list[np.ndarray] = []
    rule_idx: list[np.ndarray] = []
    messages: list[str] = []
    rule_counts: dict[str, int] = {}
    for i, rule in enumerate(rules):
        hits = rule.violations(frame, ctx)
        rule_counts[rule.name] = len(hits)
        if len(hits):
            positions.append(hits.positions.astype(np.int64))
            rule_idx.append(np.full(len(hits), i, dtype=np.int64))
            messages.extend(hits.messages)

    if positions:
        pos = np.concatenate(positions)
        which = np.concatenate(rule_idx)
    else:
        pos = np.empty(0, dtype=np.int64)
        which = np.empty(0, dtype=np.int64)
    # Sort by row, then by rule order (stable), so reasons read in rule order per row.
    order = np.lexsort((which, pos))
    pos, which = pos[order], which[order]
    msg = np.asarray(messages, dtype=object)[order] if len(messages) else np.empty(0, dtype=object)
    names = np.asarray([r.name for r in rules], dtype=object)
    cols = np.asarray([r.column for r in rules], dtype=object)

    violations = _violations_frame(frame, pos, names[which], cols[which], msg)

    bad = np.zeros(n, dtype=bool)
    bad[pos] = True
    # Accepted rows leave in the contract's dtypes whatever the input had (e.g. an int column
    # read back as float64 because a now-quarantined row left a cell empty): the GX suite that
    # re-checks them tests dtypes, and features rely on the typed convention.
    valid = with_contract_dtypes(frame.iloc[np.flatnonzero(~bad)].copy(), contract)
    quarantined = frame.iloc[np.flatnonzero(bad)].copy()
    if len(pos):
        starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])
        ends = np.r_[starts[1:], len(pos)]
        rule_names = names[which]
        quarantined[RULES_COLUMN] = pd.array([";".join(rule_names[s:e]) for s, e in zip(starts, ends)], dtype="string")
        quarantined[REASONS_COLUMN] = pd.array(["; ".join(msg[s:e]) for s, e in zip(starts, ends)], dtype="string")
    else:
        quarantined[RULES_COLUMN] = pd.array([], dtype="string")
        quarantined[REASONS_COLUMN] = pd.array([], dtype="string")
    return ValidationResult(valid=valid, quarantined=quarantined, violations=violations, rule_counts=rule_counts)


def _violations_frame(
    frame: pd.DataFrame, pos: np.ndarray, rule: np.ndarray, column: np.ndarray, message: np.ndarray
) -> pd.DataFrame:
    def take(name: str, dtype: str) -> pd.Series:
        if name in frame.columns:
            return pd.Series(frame[name].iloc[pos].to_numpy(), dtype=dtype)
        return pd.Series(pd.NA, index=range(len(pos)), dtype=dtype)

    return pd.DataFrame(
        {
            SOURCE_FILE: take(SOURCE_FILE, "string"),
            ROW_NUMBER: take(ROW_NUMBER, "Int64"),
            SAMPLE_ID: take(SAMPLE_ID, "string"),
            "rule": pd.Series(rule, dtype="string"),
            "column": pd.Series(column, dtype="string"),
            "message": pd.Series(message, dtype="string"),
        },
        columns=list(VIOLATION_COLUMNS),
    )


__all__ = ["REASONS_COLUMN", "RULES_COLUMN", "VIOLATION_COLUMNS", "ValidationResult", "validate_samples"]
