"""The one exception for a file that cannot be parsed as a whole.

Kept apart so that every reader, the encoding sniffer and the callers (the landing asset,
the CLI) share one type whose message names the file, the line and the column, and which
survives pickling across processes with those parts intact.
"""

from __future__ import annotations

from typing import Any


class ExportParseError(ValueError):
    """The whole file cannot be parsed. ``str(e)`` is ``"{file}: line {line}, column {column}: {reason}"``
    with the parts that are ``None`` left out."""

    def __init__(self, file: str, line: int | None = None, column: str | None = None, reason: str = "") -> None:
        self.file = str(file)
        self.line = line
        self.column = column
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column}")
        return f"{self.file}: {', '.join(where)}: {self.reason}" if where else f"{self.file}: {self.reason}"

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> tuple[Any, ...]:  # keep file/line/column/reason when pickled across processes
        return (type(self), (self.file, self.line, self.column, self.reason))
