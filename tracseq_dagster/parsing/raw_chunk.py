"""What every format reader yields: raw Arrow columns, their row numbers, fields per row.

The shared shape between the readers (which know a format) and the chunked driver (which
types the columns and turns short and long rows into warnings and issues).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa


@dataclass
class _RawChunk:
    raw: dict[str, pa.Array | pa.ChunkedArray]
    rows: np.ndarray
    fields: np.ndarray | None = None  # CSV only: fields found on each row
    surplus: dict[int, list[str]] = field(default_factory=dict)  # CSV only: position -> fields past the header's
