"""Which kind of export a file is (samples, sequencing runs), told by its header's columns.

The landing folder holds every kind; the sensor and ``tracseq ingest`` route each file to its
kind's job with :func:`detect_export_kind`. A file is opened once per known kind, with that
kind's aliases and separator sniffing (the header and the first rows only), and is of the kind
whose required columns it has. A file that is no kind raises :class:`ExportKindError`, naming
the columns it lacks for each kind; a file that cannot be read at all (empty, binary, a bad
header) raises the reader's own :class:`ExportParseError`, as parsing it would.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.export_kinds import EXPORT_CONTRACTS
from tracseq_dagster.parsing.errors import ExportParseError
from tracseq_dagster.parsing.header import missing_required
from tracseq_dagster.parsing.reader import ExportReader

#: Rows read per kind while detecting: enough to get past the header, cheap on any file.
DETECT_ROWS = 64
_MISSING_REASONS = ("missing required column", "missing required columns")


class ExportKindError(ExportParseError):
    """The file's columns match no export kind. ``missing``: kind name -> required columns it lacks."""

    def __init__(self, file: str, line: int | None, missing: dict[str, list[str]], titles: dict[str, str]) -> None:
        self.missing = missing
        self.titles = titles
        parts = [f"as a {titles[name]} it lacks {', '.join(cols)}" for name, cols in missing.items()]
        super().__init__(file, line, None, "not a known export kind: " + "; ".join(parts))

    def __reduce__(self) -> tuple[Any, ...]:  # keep the parts when pickled across processes
        return (type(self), (self.file, self.line, self.missing, self.titles))


def detect_export_kind(
    source: str | os.PathLike[str],
    *,
    contracts: Sequence[ExportContract] = EXPORT_CONTRACTS,
    dayfirst: bool = True,
    naive_timezone: str = "UTC",
) -> ExportContract:
    """The contract whose required columns the file's (normalised) header has."""
    missing: dict[str, list[str]] = {}
    errors: list[ExportParseError] = []
    matched: list[ExportContract] = []
    line: int | None = None
    for contract in contracts:
        try:
            with ExportReader(
                source, file_hash="", chunk_rows=DETECT_ROWS, dayfirst=dayfirst, naive_timezone=naive_timezone, contract=contract
            ) as reader:
                lacking = missing_required(set(reader.header_columns), contract)
        except ExportParseError as error:
            if error.reason in _MISSING_REASONS and error.column:
                missing[contract.name] = error.column.split(", ")
                line = error.line
            else:
                errors.append(error)
            continue
        if lacking:
            missing[contract.name] = lacking
        else:
            matched.append(contract)
    if len(matched) == 1:
        return matched[0]
    if matched:
        kinds = " and ".join(c.title for c in matched)
        raise ExportParseError(
            str(source), None, None, f"the header has the required columns of a {kinds}; send them as separate files"
        )
    if errors:
        raise errors[0]
    raise ExportKindError(str(source), line, missing, {c.name: c.title for c in contracts})


__all__ = ["DETECT_ROWS", "ExportKindError", "detect_export_kind"]
