"""The run export's rules that look rows up in the accepted samples, defined once, rendered twice.

``unknown_sample``
    A run row's ``sample_id`` is not among the accepted samples: quarantined with the reason
    "unknown sample". Row level this is membership in ``RuleContext.accepted_samples`` (the
    lake's accepted sample ids, as ``unique_across_exports`` uses the accepted keys).
``after_receipt:library_prep_ts``
    A library cannot be prepared before the lab received its sample: ``library_prep_ts`` is at
    or after the sample's ``received_ts``. Rows of unknown samples, or without a prep time, are
    left to ``unknown_sample`` and ``required:library_prep_ts``.

Both need a second table, which a Great Expectations suite over one frame cannot see. So the
GX rendering runs on the accepted run rows *joined* with the samples' facts
(:func:`with_sample_facts`): ``_sample_known`` (True/False; empty where the row has no
``sample_id``) and ``_sample_received_ts`` (empty for unknown samples). ``unknown_sample``
is then "``_sample_known`` is in {True}" (GX skips empty cells, as the row rule skips rows
without an id) and ``after_receipt`` a column-pair comparison ``library_prep_ts >=
_sample_received_ts``, rows with either side missing ignored. The pandas rendering reads the
very same two columns: from the frame when the caller already joined them (the blocking
check's explanation), else joined here from the context, so both renderings decide on the
same facts. A join is used rather than a value set of known ids in the expectation because the
accepted samples grow to millions of ids and ``received_ts`` differs per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tracseq_dagster.rules import Rule, RuleContext, _as_utc_timestamps, _gxe, _notna, _values_at, column_or_na, fmt_value
from tracseq_dagster.run_contract import SAMPLE_KNOWN, SAMPLE_RECEIVED_TS

if TYPE_CHECKING:  # pragma: no cover
    from great_expectations.expectations.expectation import Expectation

SAMPLE_ID = "sample_id"
RECEIVED_TS = "received_ts"
LIBRARY_PREP_TS = "library_prep_ts"
#: The columns of the accepted samples the run rules read.
SAMPLE_FACT_SOURCE_COLUMNS: tuple[str, ...] = (SAMPLE_ID, RECEIVED_TS)


def with_sample_facts(frame: pd.DataFrame, accepted_samples: pd.DataFrame | None) -> pd.DataFrame:
    """``frame`` with ``_sample_known`` and ``_sample_received_ts`` looked up by ``sample_id``.

    ``accepted_samples``: ``sample_id`` and ``received_ts`` of the accepted samples (None or
    empty: no sample is known). A sample id accepted twice (a superseded export) takes its last
    row.
    """
    ids = column_or_na(frame, SAMPLE_ID).astype("string")
    if accepted_samples is None or accepted_samples.empty:
        received_by_id = pd.Series([], dtype="datetime64[ns, UTC]", index=pd.Index([], dtype="string"))
    else:
        samples = accepted_samples.dropna(subset=[SAMPLE_ID]).drop_duplicates(SAMPLE_ID, keep="last")
        received = _as_utc_timestamps(samples[RECEIVED_TS]).astype("datetime64[ns, UTC]")
        received_by_id = pd.Series(received.array, index=pd.Index(samples[SAMPLE_ID].astype("string")))
    known = pd.array(ids.isin(received_by_id.index).to_numpy(dtype=bool), dtype="boolean")
    known[~_notna(ids)] = pd.NA
    received = pd.Series(received_by_id.reindex(ids.fillna("")).array, index=frame.index)
    return frame.assign(**{SAMPLE_KNOWN: pd.Series(known, index=frame.index), SAMPLE_RECEIVED_TS: received})


def _facts(frame: pd.DataFrame, ctx: RuleContext) -> pd.DataFrame:
    if SAMPLE_KNOWN in frame.columns and SAMPLE_RECEIVED_TS in frame.columns:
        return frame
    return with_sample_facts(frame[[c for c in (SAMPLE_ID, LIBRARY_PREP_TS) if c in frame.columns]], ctx.accepted_samples)


@dataclass(frozen=True)
class UnknownSampleRule(Rule):
    """``unknown_sample``: a run row names a sample that was never accepted."""

    @property
    def name(self) -> str:
        return "unknown_sample"

    @property
    def columns(self) -> tuple[str, ...]:
        return (SAMPLE_ID,)

    @property
    def description(self) -> str:
        return "sample_id must be an accepted sample"

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        known = _facts(frame, ctx)[SAMPLE_KNOWN]
        return (known == False).fillna(False).to_numpy(dtype=bool)  # noqa: E712 - NA stays unflagged

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        return [
            f"sample_id = {fmt_value(v)} is an unknown sample (not among the accepted samples)"
            for v in _values_at(frame[SAMPLE_ID], positions)
        ]

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        return [_gxe().ExpectColumnValuesToBeInSet(column=SAMPLE_KNOWN, value_set=[True])]


@dataclass(frozen=True)
class AfterReceiptRule(Rule):
    """``after_receipt:library_prep_ts``: the library was prepared at or after the sample's receipt."""

    @property
    def name(self) -> str:
        return f"after_receipt:{LIBRARY_PREP_TS}"

    @property
    def columns(self) -> tuple[str, ...]:
        return (LIBRARY_PREP_TS,)

    @property
    def description(self) -> str:
        return f"{LIBRARY_PREP_TS} must not be before the sample's {RECEIVED_TS}"

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        facts = _facts(frame, ctx)
        prep = _as_utc_timestamps(column_or_na(facts, LIBRARY_PREP_TS))
        received = facts[SAMPLE_RECEIVED_TS]
        return _notna(prep) & _notna(received) & (prep < received).fillna(False).to_numpy(dtype=bool)

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        facts = _facts(frame, ctx)
        prep = _values_at(_as_utc_timestamps(facts[LIBRARY_PREP_TS]), positions)
        received = _values_at(facts[SAMPLE_RECEIVED_TS], positions)
        ids = _values_at(facts[SAMPLE_ID], positions)
        return [
            f"{LIBRARY_PREP_TS} = {fmt_value(p)} is before sample {fmt_value(i)} was received ({RECEIVED_TS} = {fmt_value(r)})"
            for p, r, i in zip(prep, received, ids)
        ]

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        return [
            _gxe().ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=LIBRARY_PREP_TS, column_B=SAMPLE_RECEIVED_TS, or_equal=True, ignore_row_if="either_value_is_missing"
            )
        ]


__all__ = ["SAMPLE_FACT_SOURCE_COLUMNS", "AfterReceiptRule", "UnknownSampleRule", "with_sample_facts"]
