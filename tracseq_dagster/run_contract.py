"""The sequencing run export contract: one row per sample per run, as DESIGN.md describes it.

The sibling of the sample contract (:mod:`tracseq_dagster.contract`), as a value of the same
type, so the one ingestion spine parses, validates, checks and stores both. What only runs
have: the identity key is the pair (``run_id``, ``sample_id``) (a sample may be sequenced
more than once), and two rules look rows up in the accepted samples (``unknown_sample`` and
``after_receipt``, :mod:`tracseq_dagster.run_rules`). For the GX rendering of those two, the
accepted rows are joined with the samples' facts: the context columns below.
"""

from __future__ import annotations

from typing import Any

from tracseq_dagster.contract import SAMPLE_ID_PATTERN
from tracseq_dagster.export_contract import ContractColumn, ExportContract, Kind

RUN_STATUSES: tuple[str, ...] = ("pass", "fail")
RUN_ID_PATTERN = r"RUN-\d{4}-\d{5}"
PERCENT: dict[str, Any] = {"unit": "%", "minimum": 0, "maximum": 100}

RUN_COLUMNS: tuple[ContractColumn, ...] = (
    ContractColumn("run_id", Kind.STRING, True, "Sequencing run identifier", pattern=RUN_ID_PATTERN),
    ContractColumn("sample_id", Kind.STRING, True, "The sequenced sample (an accepted sample)", pattern=SAMPLE_ID_PATTERN),
    ContractColumn("instrument_id", Kind.STRING, True, "Sequencer, e.g. SEQ-03"),
    ContractColumn("flowcell_id", Kind.STRING, True, "Flow cell the library ran on"),
    ContractColumn("library_kit", Kind.STRING, True, "Library preparation kit"),
    ContractColumn("library_prep_ts", Kind.TIMESTAMP, True, "When the library was prepared"),
    ContractColumn("run_start_ts", Kind.TIMESTAMP, True, "When the run started"),
    ContractColumn("run_end_ts", Kind.TIMESTAMP, False, "When the run ended; empty while it runs"),
    ContractColumn("yield_gb", Kind.FLOAT, False, "Sequencing yield; empty until the run ends", unit="Gb", minimum=0),
    ContractColumn("q30_pct", Kind.FLOAT, False, "Bases at Q30 or above; empty until the run ends", **PERCENT),
    ContractColumn("cluster_pf_pct", Kind.FLOAT, False, "Clusters passing filter; empty until the run ends", **PERCENT),
    ContractColumn("duplication_pct", Kind.FLOAT, False, "Duplicate reads; empty until the run ends", **PERCENT),
    ContractColumn("run_status", Kind.ENUM, False, "Run QC outcome; empty until QC'd (the label)", allowed=RUN_STATUSES),
)

RUN_TIMESTAMP_ORDER: tuple[tuple[str, str], ...] = (
    ("library_prep_ts", "run_start_ts"),
    ("run_start_ts", "run_end_ts"),
)

# Headers a LIMS or a sequencer's run report is known to send (after normalisation).
RUN_COLUMN_ALIASES: dict[str, str] = {
    "runid": "run_id",
    "run": "run_id",
    "sampleid": "sample_id",
    "sample": "sample_id",
    "instrument": "instrument_id",
    "instrumentid": "instrument_id",
    "sequencer": "instrument_id",
    "flowcell": "flowcell_id",
    "flowcellid": "flowcell_id",
    "kit": "library_kit",
    "librarykit": "library_kit",
    "library_prep": "library_prep_ts",
    "library_prep_date": "library_prep_ts",
    "run_start": "run_start_ts",
    "run_end": "run_end_ts",
    "yield": "yield_gb",
    "q30": "q30_pct",
    "pct_q30": "q30_pct",
    "cluster_pf": "cluster_pf_pct",
    "pct_pf": "cluster_pf_pct",
    "duplication": "duplication_pct",
    "status": "run_status",
}

# Columns joined to accepted run rows from the accepted samples, for the GX suite (run_rules).
SAMPLE_KNOWN = "_sample_known"
SAMPLE_RECEIVED_TS = "_sample_received_ts"


def _sample_lookup_rules():  # type: ignore[no-untyped-def]
    """unknown_sample and after_receipt; imported when built (the rule classes import the contracts)."""
    from tracseq_dagster.run_rules import AfterReceiptRule, UnknownSampleRule  # noqa: PLC0415

    return (UnknownSampleRule(), AfterReceiptRule())


#: The sequencing run export as one value.
RUN_CONTRACT = ExportContract(
    name="runs",
    title="sequencing run export",
    columns=RUN_COLUMNS,
    aliases=RUN_COLUMN_ALIASES,
    timestamp_order=RUN_TIMESTAMP_ORDER,
    key_columns=("run_id", "sample_id"),
    extra_rules=_sample_lookup_rules,
    context_columns=(SAMPLE_KNOWN, SAMPLE_RECEIVED_TS),
    needs_accepted_samples=True,
)
