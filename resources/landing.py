"""The landing folder for LIMS exports as a Dagster resource."""

import json

import dagster as dg

from tracseq_dagster import landing


class LandingZoneResource(dg.ConfigurableResource):
    """Where the LIMS drops its exports: a local path or any fsspec URL.

    ``storage_options_json`` carries fsspec options for remote stores (for example
    ``{"anon": false}``); credentials come from the store's usual environment variables.
    """

    url: str
    storage_options_json: str = "{}"
    # Which files count: exports by default; the documents landing folder lists PDF, DOCX, …
    suffixes: list[str] = list(landing.EXPORT_SUFFIXES)

    @property
    def storage_options(self) -> dict:
        return json.loads(self.storage_options_json)

    def list_files(self) -> list[landing.LandingFile]:
        return landing.list_landing_files(self.url, self.suffixes, **self.storage_options)

    def content_hash(self, path: str) -> str:
        return landing.content_hash(path, **self.storage_options)

    def locate(self, file_hash: str) -> str | None:
        """The path of a file in the landing folder with this content hash, if any.

        Used when a partition is materialized by hand (UI, backfill) rather than by the
        sensor, which passes the path in the run's tags.
        """
        for f in self.list_files():
            try:
                if self.content_hash(f.path) == file_hash:
                    return f.path
            except OSError:
                continue
        return None
