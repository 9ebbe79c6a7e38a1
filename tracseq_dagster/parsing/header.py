"""A header's names into contract column names, refusing duplicates and missing required ones.

Header aliases (``Sample ID``, ``sampleId``, ``RIN``) are resolved by the contract's
``normalise_column_name``; this module applies it to a file's header, which every format
reader does the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracseq_dagster.contract import REQUIRED_COLUMNS, normalise_column_name
from tracseq_dagster.parsing.errors import ExportParseError


def _normalise_header(names: Sequence[str], file: str, line: int | None) -> list[str]:
    columns: list[str] = []
    seen: dict[str, str] = {}
    for i, raw_name in enumerate(names):
        name = normalise_column_name(str(raw_name)) or f"unnamed_{i + 1}"
        if name in seen:
            raise ExportParseError(
                file, line, name, f"duplicate column (headers {seen[name]!r} and {raw_name!r} both mean {name!r})"
            )
        seen[name] = str(raw_name)
        columns.append(name)
    return columns


def _check_required(columns: Sequence[str], file: str, line: int | None) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        reason = "missing required column" if len(missing) == 1 else "missing required columns"
        raise ExportParseError(file, line, ", ".join(missing), reason)
