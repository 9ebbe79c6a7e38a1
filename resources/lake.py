"""The lake folder as a Dagster resource."""

import dagster as dg

from tracseq_dagster.lake import Lake


class LakeResource(dg.ConfigurableResource):
    """Folder where every stage persists its Parquet tables (see tracseq_dagster.lake)."""

    root: str

    def lake(self) -> Lake:
        return Lake(self.root)
