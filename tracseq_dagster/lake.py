"""The lake folder: where every stage persists its tables as Parquet.

Layout (one file set per export, named by the export's content hash)::

    <root>/raw/<hash>.parquet            typed rows as parsed, with lineage columns
    <root>/raw/<hash>.issues.parquet     cells that could not be typed
    <root>/raw/<hash>.json               parse summary: source, kind, dialect, warnings, time
    <root>/validated/<hash>.parquet      rows that passed every contract rule
    <root>/quarantine/<hash>.parquet     rejected rows with the rules they broke
    <root>/features/sample_features.parquet
    <root>/automl/families/<family>.json   each family's latest sweep (best trial, leaderboard row)
    <root>/automl/leaderboard.json         the families of the current sweep, ranked
    <root>/automl/registered_model.json    the latest registered version and its holdout scores
    <root>/gx/                           Great Expectations project with Data Docs
    <root>/monitoring/                   feature_drift_report and ab_test_report (JSON, Parquet tables)

Every export kind (samples, sequencing runs) shares this layout: its record says which kind
it is (``kind``; records written before there were kinds are sample exports), and the readers
take the kind, so ``read_validated()`` is every accepted sample and ``read_validated_runs()``
every accepted run row, each over the current version of every export of that kind.

Raw exports themselves never live here and are never touched: the lake only holds
derived tables, so it can be rebuilt from the landing folder at any time.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from tracseq_dagster.contract import SAMPLE_CONTRACT, SOURCE_FILE
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.run_contract import RUN_CONTRACT

SAMPLES = SAMPLE_CONTRACT.name
RUNS = RUN_CONTRACT.name


@dataclass(frozen=True)
class ExportRecord:
    """What the lake knows about one parsed export (one Dagster partition)."""

    file_hash: str
    source: str
    parsed_at: str  # ISO 8601, UTC
    rows: int
    kind: str = SAMPLES  # the export kind's contract name


class Lake:
    """Typed access to the lake folder. Writes are atomic (temp file, then rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------
    def raw_path(self, file_hash: str) -> Path:
        return self.root / "raw" / f"{file_hash}.parquet"

    def issues_path(self, file_hash: str) -> Path:
        return self.root / "raw" / f"{file_hash}.issues.parquet"

    def record_path(self, file_hash: str) -> Path:
        return self.root / "raw" / f"{file_hash}.json"

    def validated_path(self, file_hash: str) -> Path:
        return self.root / "validated" / f"{file_hash}.parquet"

    def quarantine_path(self, file_hash: str) -> Path:
        return self.root / "quarantine" / f"{file_hash}.parquet"

    @property
    def features_path(self) -> Path:
        return self.root / "features" / "sample_features.parquet"

    def automl_family_path(self, model: str, family: str) -> Path:
        """The latest sweep result of one model family for one catalog model (written by automl_trials)."""
        return self.root / "automl" / model / "families" / f"{family}.json"

    def leaderboard_path(self, model: str) -> Path:
        return self.root / "automl" / model / "leaderboard.json"

    def registered_model_path(self, model: str) -> Path:
        return self.root / "automl" / model / "registered_model.json"

    def monitoring_path(self, name: str) -> Path:
        """A file of the monitoring reports (``feature_drift_report.json``, …)."""
        return self.root / "monitoring" / name

    def operations_path(self, name: str) -> Path:
        """A file of the lab operations outputs (see :mod:`tracseq_dagster.operations.outputs`)."""
        return self.root / "operations" / name

    def write_json(self, path: Path, payload: dict[str, Any]) -> Path:
        _atomic_write_text(path, json.dumps(payload, indent=2, default=str))
        return path

    def read_json(self, path: Path) -> dict[str, Any]:
        return json.loads(path.read_text())

    @property
    def gx_dir(self) -> Path:
        return self.root / "gx"

    # -- export records ------------------------------------------------------------
    def write_record(
        self, file_hash: str, source: str, rows: int, extra: dict[str, Any] | None = None, *, kind: str = SAMPLES
    ) -> ExportRecord:
        record = ExportRecord(file_hash, source, datetime.now(UTC).isoformat(), rows, kind)
        _atomic_write_text(self.record_path(file_hash), json.dumps({**asdict(record), **(extra or {})}, indent=2, default=str))
        return record

    def records(self, kind: str | None = None) -> list[ExportRecord]:
        """Every parsed export (of one kind, when given), oldest first."""
        out = []
        for path in sorted((self.root / "raw").glob("*.json")):
            data = json.loads(path.read_text())
            record = ExportRecord(
                data["file_hash"], data["source"], data["parsed_at"], int(data["rows"]), data.get("kind", SAMPLES)
            )
            if kind is None or record.kind == kind:
                out.append(record)
        return sorted(out, key=lambda r: r.parsed_at)

    def current_records(self, kind: str = SAMPLES) -> list[ExportRecord]:
        """The latest parsed version of each source file of one export kind (default: samples).

        When a lab fixes a file and drops it again under the same name, the new content
        (a new hash, a new partition) supersedes the old one: its rows replace the old
        version's rows everywhere downstream instead of colliding with them.
        """
        latest: dict[str, ExportRecord] = {}
        for record in self.records(kind):
            latest[record.source] = record
        return sorted(latest.values(), key=lambda r: r.parsed_at)

    def tables_version(self) -> tuple[tuple[str, int, int], ...]:
        """What changes whenever an accepted table or the feature table does: every current
        export's validated table and the feature table, each as (path, size, mtime in ns).
        Tables are replaced whole (:meth:`write_table`), so a rewrite always moves the mtime.
        For callers that keep something derived from them between calls (the retraining
        sensor's labelled-row counts)."""
        paths = [self.validated_path(r.file_hash) for kind in (SAMPLES, RUNS) for r in self.current_records(kind)]
        version = []
        for path in [*paths, self.features_path]:
            try:
                stat = path.stat()
            except FileNotFoundError:
                version.append((str(path), -1, -1))
                continue
            version.append((str(path), stat.st_size, stat.st_mtime_ns))
        return tuple(version)

    # -- tables --------------------------------------------------------------------
    def write_table(self, path: Path, frame: pd.DataFrame) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def read_table(self, path: Path, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(path, columns=columns)

    def head(self, path: Path, rows: int = 10) -> pd.DataFrame:
        """The first rows of a Parquet table without reading the rest of it."""
        parquet = pq.ParquetFile(path)
        if parquet.num_row_groups == 0:
            return parquet.schema_arrow.empty_table().to_pandas()
        return parquet.read_row_group(0).slice(0, rows).to_pandas()

    def read_validated(
        self, *, exclude_source: str | None = None, columns: list[str] | None = None, kind: str = SAMPLES
    ) -> pd.DataFrame:
        """All accepted rows of the current version of every export of ``kind`` (optionally but one source)."""
        frames = [
            pd.read_parquet(self.validated_path(r.file_hash), columns=columns)
            for r in self.current_records(kind)
            if r.source != exclude_source and self.validated_path(r.file_hash).exists()
        ]
        if not frames:
            return pd.DataFrame(columns=columns) if columns else pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    def read_validated_runs(self, *, exclude_source: str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        """All accepted sequencing run rows, one table over the current version of every run export."""
        return self.read_validated(exclude_source=exclude_source, columns=columns, kind=RUNS)

    def accepted_sample_ids(self, *, exclude_source: str | None = None) -> pd.Index:
        """Sample ids already accepted from other exports (for cross-export uniqueness)."""
        frame = self.read_validated(exclude_source=exclude_source, columns=["sample_id"])
        return pd.Index(frame["sample_id"].dropna().astype(str).unique()) if len(frame) else pd.Index([], dtype=str)

    def accepted_keys(self, contract: ExportContract, *, exclude_source: str | None = None) -> pd.Index:
        """The identity keys of ``contract``'s kind already accepted from other exports.

        Samples: :meth:`accepted_sample_ids`. A kind keyed by several columns: a MultiIndex of
        their values (as text), rows with an empty key part left out.
        """
        if contract is SAMPLE_CONTRACT:
            return self.accepted_sample_ids(exclude_source=exclude_source)
        key = list(contract.key_columns)
        frame = self.read_validated(exclude_source=exclude_source, columns=key, kind=contract.name)
        if not len(frame):
            return pd.MultiIndex.from_arrays([pd.Index([], dtype=str)] * len(key), names=key)
        frame = frame.dropna().astype(str).drop_duplicates()
        return pd.MultiIndex.from_frame(frame)

    def accepted_samples(self) -> pd.DataFrame:
        """``sample_id`` and ``received_ts`` of every accepted sample (what run rows are checked against)."""
        frame = self.read_validated(columns=["sample_id", "received_ts"])
        if not len(frame):
            return pd.DataFrame(
                {"sample_id": pd.Series([], dtype="string"), "received_ts": pd.Series([], dtype="datetime64[ns, UTC]")}
            )
        return frame

    def read_features(self) -> pd.DataFrame:
        if not self.features_path.exists():
            raise FileNotFoundError(f"{self.features_path} does not exist: materialize sample_features first (tracseq ingest)")
        return pd.read_parquet(self.features_path)

    def read_quarantine(self, kind: str = SAMPLES) -> pd.DataFrame:
        frames = [
            pd.read_parquet(self.quarantine_path(r.file_hash))
            for r in self.current_records(kind)
            if self.quarantine_path(r.file_hash).exists()
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[SOURCE_FILE])


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
