"""A header's names into contract column names, refusing duplicates and missing required ones.

Header aliases (``Sample ID``, ``sampleId``, ``RIN``) are resolved by the contract's
``normalise_column_name`` (each export kind has its own aliases); this module applies it to a file's header, which every format
reader does the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracseq_dagster.contract import SAMPLE_CONTRACT
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.parsing.errors import ExportParseError


def _normalise_header(names: Sequence[str], file: str, line: int | None, contract: ExportContract = SAMPLE_CONTRACT) -> list[str]:
    columns: list[str] = []
    seen: dict[str, str] = {}
    for i, raw_name in enumerate(names):
        name = contract.normalise_column_name(str(raw_name)) or f"unnamed_{i + 1}"
        if name in seen:
            raise ExportParseError(
                file, line, name, f"duplicate column (headers {seen[name]!r} and {raw_name!r} both mean {name!r})"
            )
        seen[name] = str(raw_name)
        columns.append(name)
    return columns


def missing_required(columns: Sequence[str] | set[str], contract: ExportContract = SAMPLE_CONTRACT) -> list[str]:
    """The contract's required columns a (normalised) header lacks, in contract order."""
    return [c for c in contract.required_columns if c not in columns]


def _check_required(
    columns: Sequence[str] | set[str], file: str, line: int | None, contract: ExportContract = SAMPLE_CONTRACT
) -> None:
    missing = missing_required(columns, contract)
    if missing:
        reason = "missing required column" if len(missing) == 1 else "missing required columns"
        raise ExportParseError(file, line, ", ".join(missing), reason)
