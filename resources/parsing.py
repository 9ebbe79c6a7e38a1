"""How exports are read: memory budget and date conventions."""

import dagster as dg


class ExportParsingResource(dg.ConfigurableResource):
    """Settings of the export parser.

    ``chunk_rows`` bounds memory: a file is read, typed and written this many rows at a
    time. ``dayfirst`` reads 03/04/2025 as 3 April. Naive timestamps are taken to be in
    ``naive_timezone`` (the lab's local zone) and stored in UTC.
    """

    chunk_rows: int = 250_000
    dayfirst: bool = True
    naive_timezone: str = "UTC"
