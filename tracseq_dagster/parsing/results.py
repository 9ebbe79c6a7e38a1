"""What a parse hands back: a typed chunk, the sniffed dialect and the file's summary.

Plain dataclasses with no parsing logic, so that callers can type against them without
pulling in the readers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd


@dataclass
class ParsedChunk:
    """One bounded chunk: the typed rows and the cells that could not be typed."""

    frame: pd.DataFrame
    issues: pd.DataFrame


@dataclass
class ExportDialect:
    """What was sniffed: ``format`` is ``"csv"``, ``"jsonl"`` or ``"parquet"``; ``date_style`` is
    e.g. ``"ISO 8601"``, ``"DD.MM.YYYY"``, ``"Excel serial"``, ``"native"`` (Parquet timestamps)
    or ``"mixed: ISO 8601, DD.MM.YYYY"``; ``None`` where it does not apply or nothing was seen."""

    format: str
    encoding: str | None = None
    separator: str | None = None
    decimal: str | None = None
    bom: bool = False
    date_style: str | None = None


@dataclass
class ParseSummary:
    source: str
    file_hash: str
    rows: int
    issues: int
    dialect: ExportDialect
    extra_columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
