"""Operations: demand (being built)."""

import dagster as dg

defs = dg.Definitions()
