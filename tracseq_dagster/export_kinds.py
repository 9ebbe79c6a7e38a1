"""The export kinds a landing folder may hold, in ingestion order.

Samples come first: a run export's rows are checked against the accepted samples, so the
samples of the same drop must be in the lake before its runs are validated.
"""

from __future__ import annotations

from tracseq_dagster.contract import SAMPLE_CONTRACT
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.run_contract import RUN_CONTRACT

EXPORT_CONTRACTS: tuple[ExportContract, ...] = (SAMPLE_CONTRACT, RUN_CONTRACT)
#: What a file is taken for when its kind cannot be told (its run then fails, naming why).
DEFAULT_CONTRACT = SAMPLE_CONTRACT


def contract_named(name: str) -> ExportContract:
    """The contract of a kind by its name (``samples``, ``runs``), as export records store it."""
    for contract in EXPORT_CONTRACTS:
        if contract.name == name:
            return contract
    raise KeyError(f"unknown export kind {name!r}; known: {', '.join(c.name for c in EXPORT_CONTRACTS)}")
