"""Run exports whose quarantined rows were only waiting for their samples.

A lab often drops a sequencing run export together with the sample export that holds its
samples. When the run export is validated first, its rows are quarantined as
``unknown_sample``: that is right at that moment, but once the samples are accepted the same
rows would pass. Validation is a function of the raw table and the accepted samples, so the
fix is to validate the run export's partition again; this module only says which partitions
that would change, so a sensor or ``tracseq ingest`` re-validates those and no others.

"Would change" means: the export's current quarantine holds an ``unknown_sample`` row whose
``sample_id`` is now accepted. Such a row will at least lose that rule (it is accepted, or
stays quarantined for its other rules, e.g. a library prepared before the sample's receipt).
Rows of samples that never arrived leave nothing to do, so a partition is not re-validated
again and again for them. Superseded versions of a run export are not looked at: the lake
reads only the current version of each source file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tracseq_dagster.contract import FILE_HASH
from tracseq_dagster.lake import RUNS, Lake
from tracseq_dagster.run_rules import SAMPLE_ID, UnknownSampleRule
from tracseq_dagster.validation import RULES_COLUMN

UNKNOWN_SAMPLE = UnknownSampleRule().name
# ``_rules`` is the ';'-joined list of the rules a row broke (tracseq_dagster.validation).
_BROKE_UNKNOWN_SAMPLE = rf"(?:^|;){re.escape(UNKNOWN_SAMPLE)}(?:;|$)"


@dataclass(frozen=True)
class AwaitingExport:
    """One run export (its partition key ``file_hash``) and how many of its quarantined rows
    name a sample that has been accepted since."""

    file_hash: str
    source: str
    rows: int


def run_exports_awaiting_samples(lake: Lake) -> list[AwaitingExport]:
    """The run exports worth re-validating now, oldest first (the lake's order of exports)."""
    quarantined = lake.read_quarantine(RUNS)
    if quarantined.empty:
        return []
    unknown = quarantined[RULES_COLUMN].astype("string").str.contains(_BROKE_UNKNOWN_SAMPLE, regex=True, na=False)
    arrived = quarantined[SAMPLE_ID].astype("string").isin(lake.accepted_sample_ids()).fillna(False)
    counts = quarantined.loc[(unknown & arrived).to_numpy(dtype=bool), FILE_HASH].value_counts()
    return [
        AwaitingExport(record.file_hash, record.source, int(counts[record.file_hash]))
        for record in lake.current_records(RUNS)
        if record.file_hash in counts.index
    ]


__all__ = ["UNKNOWN_SAMPLE", "AwaitingExport", "run_exports_awaiting_samples"]
