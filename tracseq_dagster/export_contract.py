"""What an export contract is: a value that the parser, the rules, the GX suite and the lake read.

A lab sends more than one kind of export (samples, sequencing runs, ...). Each kind is one
:class:`ExportContract` value: its columns, the header aliases a LIMS is known to write, the
timestamps that must be in order, the columns that identify a row across exports, and the
rules that only make sense for that kind. The ingestion spine (parsing, row rules and
quarantine, the Great Expectations suite, the lake, the Dagster assets) is written once and
takes the contract as a parameter, so a new kind is a new value, not a second copy of the code.

Derived views (column names by kind, required columns, enum spellings) are computed once per
contract; contracts compare and hash by identity, so they can key caches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from tracseq_dagster.rules import Rule


class Kind(str, Enum):
    """The logical type of a contract column."""

    STRING = "string"
    ENUM = "enum"
    TIMESTAMP = "timestamp"
    FLOAT = "float"
    INT = "int"


@dataclass(frozen=True)
class ContractColumn:
    """One column of an export contract.

    ``minimum``/``maximum`` are inclusive unless ``exclusive_minimum`` is set.
    ``pattern`` is a full-match regular expression for strings.
    """

    name: str
    kind: Kind
    required: bool
    description: str
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    allowed: tuple[str, ...] | None = None
    pattern: str | None = None


#: The pandas dtype of each kind in the typed frame (the parser's output, the validator's
#: accepted rows, the lake's tables): nullable ``Int64`` so an int column with an empty cell
#: stays an int column, ``"string"`` so text is never mistaken for numbers.
PANDAS_DTYPE_BY_KIND: dict[Kind, str] = {
    Kind.STRING: "string",
    Kind.ENUM: "string",
    Kind.FLOAT: "float64",
    Kind.INT: "Int64",
    Kind.TIMESTAMP: "datetime64[ns, UTC]",
}

_NON_WORD = re.compile(r"[^0-9a-z]+")


def _no_extra_rules() -> Sequence[Rule]:
    return ()


@dataclass(frozen=True, eq=False)
class ExportContract:
    """One kind of lab export, as data.

    ``name``: the kind's short name (``samples``, ``runs``), stored with every export record.
    ``title``: how messages name one row's kind (``sample export``).
    ``timestamp_order``: (earlier, later) pairs forming one chain; the order rules derive from it.
    ``key_columns``: what identifies a row, unique inside an export and across all exports.
    ``extra_rules``: the rules of this kind beyond the per-column ones, built on demand (a
    callable, because the rule classes import the contracts).
    ``context_columns``: columns a caller joins to the accepted rows before running the GX suite
    for cross-table rules (see :mod:`tracseq_dagster.run_rules`); kept when the frame is cut
    down to the contract's columns.
    ``needs_accepted_samples``: its rules look rows up in the accepted samples (the validator
    then needs them, and the suite runs on rows joined with them).
    """

    name: str
    title: str
    columns: tuple[ContractColumn, ...]
    aliases: Mapping[str, str]
    timestamp_order: tuple[tuple[str, str], ...]
    key_columns: tuple[str, ...]
    extra_rules: Callable[[], Sequence[Rule]] = _no_extra_rules
    context_columns: tuple[str, ...] = ()
    needs_accepted_samples: bool = False

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate column names")
        unknown = [c for pair in self.timestamp_order for c in pair if c not in names] + [
            c for c in self.key_columns if c not in names
        ]
        unknown += [target for target in self.aliases.values() if target not in names]
        if unknown:
            raise ValueError(f"{self.name}: order, key or alias names unknown columns {unknown}")
        for c in self.columns:
            if c.allowed is not None and len({v.lower() for v in c.allowed}) != len(c.allowed):
                raise ValueError(f"{self.name}: two allowed values of {c.name} differ only in case")

    # -- derived views -------------------------------------------------------------------
    @cached_property
    def column_by_name(self) -> dict[str, ContractColumn]:
        return {c.name: c for c in self.columns}

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @cached_property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def names_of(self, *kinds: Kind) -> tuple[str, ...]:
        """The contract's columns of the given kinds, in contract order."""
        return tuple(c.name for c in self.columns if c.kind in kinds)

    @cached_property
    def enum_spellings(self) -> dict[str, dict[str, str]]:
        """Per enum column, the lower-case form of each allowed value -> the contract's spelling.

        Enumerated values are matched case-insensitively (labs write ``URGENT``, ``dna``,
        ``Pass``); the typed frame stores the contract's spelling, which the rules and the GX
        suite then compare exactly.
        """
        return {c.name: {v.lower(): v for v in c.allowed} for c in self.columns if c.allowed is not None}

    @cached_property
    def suite_columns(self) -> tuple[str, ...]:
        """The columns the GX suite may name: the contract's, then its context columns."""
        return self.column_names + self.context_columns

    def normalise_column_name(self, raw: str) -> str:
        """Map a header as a LIMS writes it ("Sample ID", "A260/280", "\\ufeffsample_id") to a column name.

        Unknown headers are normalised the same way (lower snake case) and kept.
        """
        name = raw.replace("\ufeff", "").strip().lower()
        name = _NON_WORD.sub("_", name).strip("_")
        return self.aliases.get(name, self.aliases.get(name.replace("_", ""), name))

    def __repr__(self) -> str:
        return f"ExportContract({self.name!r})"
