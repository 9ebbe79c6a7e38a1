"""Operations: qc_report (being built)."""

import dagster as dg

defs = dg.Definitions()
