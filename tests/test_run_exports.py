"""The sequencing run export through the ingestion spine the sample export uses.

Domain level (fast): the two contracts as values, kind detection by header, the run export's
messy dialects, every run rule quarantining exactly its row with file, line and field, the
pandas and Great Expectations renderings agreeing, and the two rules that look rows up in the
accepted samples (unknown sample, library prepared before receipt).

Dagster level (slow): the landing sensor routes each file of a mixed drop to its kind's job,
one bad run file fails alone, and ``ingest_folder`` is idempotent and lets a fixed run file
supersede its earlier version.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.test_lab_export_hardening import sample  # a clean sample row, sample_id TS-2025-7000ii
from tests.test_landing import SensorHarness
from tracseq_dagster import contract as sample_module
from tracseq_dagster.contract import CONTRACT_COLUMNS, ROW_NUMBER, SAMPLE_CONTRACT, SOURCE_FILE, WHOLE_ROW
from tracseq_dagster.definitions import build_definitions
from tracseq_dagster.expectations import run_expectation_suite, suite_frame
from tracseq_dagster.export_kinds import EXPORT_CONTRACTS, contract_named
from tracseq_dagster.ingest import ingest_folder
from tracseq_dagster.lake import Lake
from tracseq_dagster.parsing import ExportKindError, ExportParseError, detect_export_kind, read_export
from tracseq_dagster.rules import contract_rules, rules_for
from tracseq_dagster.run_contract import RUN_CONTRACT
from tracseq_dagster.run_rules import with_sample_facts
from tracseq_dagster.validation import validate_samples

NOW = pd.Timestamp("2025-06-01T12:00:00", tz="UTC")
RUN_COLUMNS = [
    "run_id",
    "sample_id",
    "instrument_id",
    "flowcell_id",
    "library_kit",
    "library_prep_ts",
    "run_start_ts",
    "run_end_ts",
    "yield_gb",
    "q30_pct",
    "cluster_pf_pct",
    "duplication_pct",
    "run_status",
]
RECEIVED = "2025-03-02T09:00:00Z"


def sample_id(i: int) -> str:
    """The id of ``sample(i)``."""
    return f"TS-2025-{700000 + i:06d}"


def run(i: int, **changes: object) -> dict:
    row = dict(
        run_id="RUN-2025-00042",
        sample_id=sample_id(i),
        instrument_id="SEQ-03",
        flowcell_id="FC-A1",
        library_kit="DNA-PCRFREE",
        library_prep_ts="2025-03-05T08:00:00Z",
        run_start_ts="2025-03-06T08:00:00Z",
        run_end_ts="2025-03-07T10:30:00Z",
        yield_gb="12.5",
        q30_pct="91.2",
        cluster_pf_pct="80.5",
        duplication_pct="7.5",
        run_status="pass",
    )
    row.update({k: str(v) for k, v in changes.items()})
    return row


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None, sep: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows)[columns or list(rows[0])].to_csv(path, index=False, sep=sep)
    return path


def accepted_samples(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": pd.array([sample_id(i) for i in range(n)], dtype="string"),
            "received_ts": pd.to_datetime([RECEIVED] * n, utc=True),
        }
    )


# -- contracts as values ---------------------------------------------------------------------


def test_the_run_contract_is_the_design_table_and_the_sample_contract_keeps_its_names() -> None:
    assert list(RUN_CONTRACT.column_names) == RUN_COLUMNS
    assert RUN_CONTRACT.key_columns == ("run_id", "sample_id")
    assert RUN_CONTRACT.required_columns == (
        "run_id",
        "sample_id",
        "instrument_id",
        "flowcell_id",
        "library_kit",
        "library_prep_ts",
        "run_start_ts",
    )
    assert RUN_CONTRACT.column_by_name["run_status"].allowed == ("pass", "fail")
    assert all(RUN_CONTRACT.column_by_name[c].maximum == 100 for c in ("q30_pct", "cluster_pf_pct", "duplication_pct"))
    assert RUN_CONTRACT.column_by_name["yield_gb"].minimum == 0
    # The sample contract's module-level names are views of the value.
    assert SAMPLE_CONTRACT.column_names == CONTRACT_COLUMNS == tuple(c.name for c in sample_module.COLUMNS)
    assert SAMPLE_CONTRACT.enum_spellings is sample_module.ENUM_SPELLINGS
    assert sample_module.normalise_column_name("Sample ID") == "sample_id"
    assert RUN_CONTRACT.normalise_column_name("Run ID") == "run_id" and RUN_CONTRACT.normalise_column_name("Q30") == "q30_pct"
    assert [c.name for c in EXPORT_CONTRACTS] == ["samples", "runs"] and contract_named("runs") is RUN_CONTRACT
    # The sample rules are what they were; the run rules are derived from the same families.
    assert [r.name for r in contract_rules()] == [r.name for r in rules_for(SAMPLE_CONTRACT)]
    names = [r.name for r in rules_for(RUN_CONTRACT)]
    assert names[-4:] == [
        "unknown_sample",
        "after_receipt:library_prep_ts",
        "unique:run_id,sample_id",
        "unique_across_exports:run_id,sample_id",
    ]
    assert "order:library_prep_ts<=run_start_ts" in names and "order:run_start_ts<=run_end_ts" in names
    assert not any(n.startswith(("rin_only", "din_only")) for n in names)


# -- kind detection ----------------------------------------------------------------------------


def test_kind_is_told_by_the_header_in_every_format_and_dialect(tmp_path: Path) -> None:
    samples = write_csv(tmp_path / "samples.csv", [sample(0)])
    runs = write_csv(tmp_path / "runs.csv", [run(0)])
    # A spreadsheet's run report: semicolons, a BOM, aliases, another column order, decimal commas.
    messy = tmp_path / "run_report.txt"
    messy.write_bytes(
        "\ufeffSample ID;Run ID;Instrument;Flowcell;Kit;Library Prep;Run Start;Run End;Yield;Q30;Cluster PF;Duplication;Status\r\n"
        "TS-2025-700000;RUN-2025-00042;SEQ-03;FC-A1;DNA-PCRFREE;05.03.2025 08:00;06.03.2025 08:00;07.03.2025 10:30;12,5;91,2;80,5;7,5;PASS\r\n"
        "\r\n".encode("utf-8")
    )
    parquet = tmp_path / "runs.parquet"
    pq.write_table(pa.Table.from_pandas(pd.DataFrame([run(1)])), parquet)
    jsonl = tmp_path / "runs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [run(2), run(3)]) + "\n")

    assert detect_export_kind(samples) is SAMPLE_CONTRACT
    for path in (runs, messy, parquet, jsonl):
        assert detect_export_kind(path) is RUN_CONTRACT, path

    frame, issues, summary = read_export(messy, contract=RUN_CONTRACT)
    assert issues.empty and summary.dialect.separator == ";" and summary.dialect.decimal == ","
    row = frame.iloc[0]
    assert (row["run_id"], row["sample_id"], row["run_status"]) == ("RUN-2025-00042", "TS-2025-700000", "pass")
    assert row["yield_gb"] == 12.5 and row["q30_pct"] == 91.2
    assert row["library_prep_ts"] == pd.Timestamp("2025-03-05T08:00:00Z")
    assert frame[ROW_NUMBER].tolist() == [2]
    assert list(frame.columns[: len(RUN_COLUMNS)]) == RUN_COLUMNS
    assert str(frame["run_end_ts"].dtype) == "datetime64[ns, UTC]" and str(frame["run_id"].dtype) == "string"


def test_kind_detection_and_parsing_read_fsspec_urls(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/tracseq-runs/runs.csv", write_csv(tmp_path / "runs.csv", [run(0), run(1)]).read_bytes())
    url = "memory:///tracseq-runs/runs.csv"
    assert detect_export_kind(url) is RUN_CONTRACT
    frame, issues, _ = read_export(url, contract=RUN_CONTRACT)
    assert issues.empty and frame["sample_id"].tolist() == [sample_id(0), sample_id(1)]
    assert (frame[SOURCE_FILE] == url).all()


def test_a_file_of_neither_kind_names_the_columns_it_lacks_for_each(tmp_path: Path) -> None:
    neither = write_csv(tmp_path / "neither.csv", [{"sample_id": sample_id(0), "project_id": "P1", "notes": "x"}])
    with pytest.raises(ExportKindError) as caught:
        detect_export_kind(neither)
    error = caught.value
    assert error.missing["runs"] == ["run_id", "instrument_id", "flowcell_id", "library_kit", "library_prep_ts", "run_start_ts"]
    assert error.missing["samples"][:3] == ["sample_type", "collection_ts", "received_ts"]
    message = str(error)
    assert message.startswith(f"{neither}: line 1: not a known export kind: ")
    assert "as a sample export it lacks sample_type, collection_ts" in message
    assert (
        "as a sequencing run export it lacks run_id, instrument_id, flowcell_id, library_kit, library_prep_ts, run_start_ts"
        in message
    )
    # JSON Lines (no header: the keys of the records) fails the same way.
    jsonl = tmp_path / "neither.jsonl"
    jsonl.write_text(json.dumps({"run_id": "RUN-2025-00001", "sample_id": sample_id(0)}) + "\n")
    with pytest.raises(ExportKindError, match="as a sequencing run export it lacks instrument_id, flowcell_id"):
        detect_export_kind(jsonl)
    # A file that is no export at all keeps the reader's own reason.
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ExportParseError, match="file is empty") as caught_empty:
        detect_export_kind(empty)
    assert not isinstance(caught_empty.value, ExportKindError)


# -- every run rule quarantines exactly its row --------------------------------------------------


@dataclass
class Case:
    rule: str
    change: Callable[[list[dict]], None]
    field: str
    fragment: str
    rows: tuple[int, ...] = (2,)  # row positions (line = position + 2)
    surplus: str = ""  # extra fields appended to row 2's CSV line
    injected_issue: str | None = None  # a parse issue on row 2 for this column (text columns cannot fail typing)
    known: list[tuple[str, str]] = field(default_factory=list)


def _set(**values: str) -> Callable[[list[dict]], None]:
    def change(rows: list[dict]) -> None:
        rows[2].update(values)

    return change


def _build_cases() -> list[Case]:
    cases: list[Case] = []
    for column in RUN_CONTRACT.required_columns:
        cases.append(Case(f"required:{column}", _set(**{column: ""}), column, f"{column} = <empty> but {column} is required"))
    for column in ("library_prep_ts", "run_start_ts", "run_end_ts"):
        cases.append(Case(f"type:{column}", _set(**{column: "31.02.2025 10:00"}), column, "could not be read as a timestamp"))
    for column in ("yield_gb", "q30_pct", "cluster_pf_pct", "duplication_pct"):
        cases.append(Case(f"type:{column}", _set(**{column: "lots"}), column, "could not be read as a number"))
    for column in ("run_id", "sample_id", "instrument_id", "flowcell_id", "library_kit", "run_status"):
        cases.append(Case(f"type:{column}", _set(), column, "could not be read as a text", injected_issue=column))
    cases.append(Case("enum:run_status", _set(run_status="maybe"), "run_status", "run_status = 'maybe' is not one of pass, fail"))
    cases.append(Case("range:yield_gb", _set(yield_gb="-0.5"), "yield_gb", "yield_gb = -0.5 is below the minimum 0"))
    for column in ("q30_pct", "cluster_pf_pct", "duplication_pct"):
        cases.append(Case(f"range:{column}", _set(**{column: "100.5"}), column, f"{column} = 100.5 is above the maximum 100"))
    cases.append(Case("pattern:run_id", _set(run_id="RUN-25-42"), "run_id", r"does not match the pattern RUN-\d{4}-\d{5}"))
    cases.append(Case("pattern:sample_id", _set(sample_id="TS-2025-7"), "sample_id", "does not match the pattern"))
    cases.append(
        Case(
            "order:library_prep_ts<=run_start_ts",
            _set(library_prep_ts="2025-03-06T09:00:00Z", run_start_ts="2025-03-06T08:00:00Z"),
            "library_prep_ts,run_start_ts",
            "run_start_ts = 2025-03-06T08:00:00+00:00 is before library_prep_ts",
        )
    )
    cases.append(
        Case(
            "order:run_start_ts<=run_end_ts",
            _set(run_end_ts="2025-03-05T23:00:00Z"),
            "run_start_ts,run_end_ts",
            "run_end_ts = 2025-03-05T23:00:00+00:00 is before run_start_ts",
        )
    )
    cases.append(
        Case(
            "order:library_prep_ts<=run_end_ts",
            _set(library_prep_ts="2025-03-08T08:00:00Z", run_start_ts="", run_end_ts="2025-03-07T10:30:00Z"),
            "library_prep_ts,run_end_ts",
            "(run_start_ts empty)",
        )
    )
    for column in ("library_prep_ts", "run_start_ts", "run_end_ts"):
        cases.append(Case(f"plausible_date:{column}", _set(**{column: "2031-01-01T00:00:00Z"}), column, "is in the future"))
    cases.append(
        Case("unknown_sample", _set(sample_id="TS-2025-799999"), "sample_id", "sample_id = 'TS-2025-799999' is an unknown sample")
    )
    cases.append(
        Case(
            "after_receipt:library_prep_ts",
            _set(library_prep_ts="2025-03-02T08:59:00Z"),
            "library_prep_ts",
            "library_prep_ts = 2025-03-02T08:59:00+00:00 is before sample 'TS-2025-700002' was received",
        )
    )
    cases.append(
        Case(
            "unique:run_id,sample_id",
            _set(sample_id=sample_id(1)),
            "run_id,sample_id",
            "(run_id, sample_id) = ('RUN-2025-00042', 'TS-2025-700001') is duplicated in this export",
            rows=(1, 2),
        )
    )
    cases.append(
        Case(
            "unique_across_exports:run_id,sample_id",
            _set(),
            "run_id,sample_id",
            "was already accepted from another export",
            known=[("RUN-2025-00042", sample_id(2))],
        )
    )
    cases.append(Case("field_count", _set(), WHOLE_ROW, "row has 14 fields but the header has 13", surplus="oops"))
    return cases


CASES = _build_cases()
# Several rules of one case on one row (e.g. a bad timestamp is also empty for the order rules):
# only the case's rule is asserted, plus that no other row is touched.


def test_every_run_rule_has_a_case() -> None:
    assert {c.rule for c in CASES} == {r.name for r in rules_for(RUN_CONTRACT)}


def _export(tmp_path: Path, case: Case) -> Path:
    rows = [run(i) for i in range(5)]
    case.change(rows)
    lines = [",".join(RUN_COLUMNS)] + [",".join(r[c] for c in RUN_COLUMNS) for r in rows]
    if case.surplus:
        lines[3] += "," + case.surplus
    path = tmp_path / "runs_case.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_one_bad_run_row_is_quarantined_alone_naming_file_line_and_field(tmp_path: Path, case: Case) -> None:
    path = _export(tmp_path, case)
    frame, issues, _ = read_export(path, contract=RUN_CONTRACT)
    if case.injected_issue:
        issues = pd.concat(
            [
                issues,
                pd.DataFrame(
                    {
                        ROW_NUMBER: [4],
                        "column": [case.injected_issue],
                        "value": ["\x00"],
                        "rule": ["type"],
                        "message": ["not text"],
                    }
                ),
            ],
            ignore_index=True,
        )
    known = pd.MultiIndex.from_tuples(case.known, names=["run_id", "sample_id"]) if case.known else None
    result = validate_samples(
        frame, issues, contract=RUN_CONTRACT, known_keys=known, accepted_samples=accepted_samples(), now=NOW
    )

    lines = [r + 2 for r in case.rows]
    assert sorted(result.quarantined[ROW_NUMBER].tolist()) == lines
    assert len(result.valid) == 5 - len(case.rows)
    mine = result.violations[result.violations["rule"] == case.rule]
    assert sorted(mine[ROW_NUMBER].tolist()) == lines
    assert (mine["column"] == case.field).all()
    assert mine[SOURCE_FILE].str.endswith("runs_case.csv").all()
    for message in mine["message"]:
        assert case.fragment in message, message
    assert result.rule_counts[case.rule] == len(case.rows)


def test_unknown_sample_and_prep_before_receipt_against_the_accepted_samples() -> None:
    frame = pd.DataFrame([run(0), run(1, sample_id="TS-2025-799999"), run(2, library_prep_ts="2025-03-01T00:00:00Z"), run(3)])
    frame = frame.assign(library_prep_ts=pd.to_datetime(frame["library_prep_ts"], utc=True))
    samples = accepted_samples(4)
    # Sample 3 was received late: its library (prepared 2025-03-05 08:00) came before it.
    samples.loc[3, "received_ts"] = pd.Timestamp("2025-03-05T08:00:01Z")
    result = validate_samples(frame, contract=RUN_CONTRACT, accepted_samples=samples, now=NOW)
    reasons = dict(zip(result.quarantined.index, result.quarantined["_reasons"]))
    assert sorted(reasons) == [1, 2, 3]
    assert "is an unknown sample (not among the accepted samples)" in reasons[1]
    assert result.quarantined.loc[1, "_rules"] == "unknown_sample"  # no after_receipt for an unknown sample
    assert result.quarantined.loc[2, "_rules"] == result.quarantined.loc[3, "_rules"] == "after_receipt:library_prep_ts"
    assert "(received_ts = 2025-03-05T08:00:01+00:00)" in reasons[3]
    # Prepared exactly at receipt is fine; with no accepted samples at all, every sample is unknown.
    samples.loc[3, "received_ts"] = pd.Timestamp("2025-03-05T08:00:00Z")
    assert validate_samples(frame.iloc[[3]], contract=RUN_CONTRACT, accepted_samples=samples, now=NOW).quarantined.empty
    none = validate_samples(frame, contract=RUN_CONTRACT, accepted_samples=None, now=NOW)
    assert none.rule_counts["unknown_sample"] == 4 and none.valid.empty
    # The join the suite runs on: known flag and receipt per row, empty for an unknown sample.
    joined = with_sample_facts(frame, samples)
    assert joined["_sample_known"].tolist() == [True, False, True, True]
    assert joined["_sample_received_ts"].isna().tolist() == [False, True, False, False]


def test_pandas_and_gx_agree_on_every_run_rule_of_a_dirty_frame(tmp_path: Path) -> None:
    rows = [run(i) for i in range(14)]  # rows 12 and 13 stay clean
    rows[1].update(run_status="maybe")
    rows[2].update(yield_gb="-1")
    rows[3].update(q30_pct="101", duplication_pct="-3")
    rows[4].update(run_id="RUN-2025-1")
    rows[5].update(run_end_ts="2025-03-06T07:00:00Z")
    rows[6].update(library_prep_ts="2025-03-07T00:00:00Z", run_start_ts="", run_end_ts="2025-03-06T00:00:00Z")
    rows[7].update(run_end_ts="2031-01-01T00:00:00Z")
    rows[8].update(sample_id="TS-2025-799999")
    rows[9].update(library_prep_ts="2025-03-01T00:00:00Z", run_start_ts="2025-03-01T01:00:00Z")
    rows[10].update(sample_id=sample_id(11))  # a duplicate (run_id, sample_id) with row 11
    rows[0].update(flowcell_id="")
    path = write_csv(tmp_path / "dirty_runs.csv", rows, RUN_COLUMNS)
    frame, issues, _ = read_export(path, contract=RUN_CONTRACT)
    samples = accepted_samples(14)

    row_level = validate_samples(frame, issues, contract=RUN_CONTRACT, accepted_samples=samples, now=NOW)
    summary = run_expectation_suite(suite_frame(frame, RUN_CONTRACT, samples), contract=RUN_CONTRACT, now=NOW)

    expected = {
        "required:flowcell_id": 1,
        "required:run_start_ts": 1,
        "enum:run_status": 1,
        "range:yield_gb": 1,
        "range:q30_pct": 1,
        "range:duplication_pct": 1,
        "pattern:run_id": 1,
        "order:run_start_ts<=run_end_ts": 1,
        "order:library_prep_ts<=run_end_ts": 1,
        "plausible_date:run_end_ts": 1,
        "unknown_sample": 1,
        "after_receipt:library_prep_ts": 1,
        "unique:run_id,sample_id": 2,
    }
    assert row_level.failed_rules == expected
    # GX sees the same rules fail on the same number of rows; on one export the cross-export
    # rule is the in-export uniqueness again (row level it needs the accepted keys).
    assert summary.failed_rules() == {**expected, "unique_across_exports:run_id,sample_id": 2}
    assert sorted(row_level.quarantined[ROW_NUMBER]) == list(range(2, 14)) and row_level.valid[ROW_NUMBER].tolist() == [14, 15]


# -- on a real Dagster instance ------------------------------------------------------------------


def _mixed_drop(landing: Path) -> dict[str, Path]:
    """Runs written first (so they sort and settle before their samples), samples, a bad run file, a stray file."""
    runs = [run(i, run_id="RUN-2025-00042") for i in range(4)] + [run(1, run_id="RUN-2025-00043")]
    runs[3]["sample_id"] = "TS-2025-799999"  # unknown sample: quarantined
    runs[2]["library_prep_ts"] = "2025-03-01T00:00:00Z"  # before receipt: quarantined
    paths = {"runs": write_csv(landing / "a_runs.csv", runs, RUN_COLUMNS)}
    bad = landing / "a_runs_broken.jsonl"  # a run export cut off mid-record on line 71: its run fails alone
    good = [json.dumps(run(0, run_id=f"RUN-2025-{100 + i:05d}")) for i in range(70)]
    bad.write_text("\n".join(good) + '\n{"run_id": "RUN-2025-00999", "sample_id": \n')
    paths["bad_runs"] = bad
    paths["samples"] = write_csv(landing / "b_samples.csv", [sample(i) for i in range(4)], list(CONTRACT_COLUMNS))
    paths["runs_jsonl"] = landing / "c_runs.jsonl"
    paths["runs_jsonl"].write_text(json.dumps(run(0, run_id="RUN-2025-00050")) + "\n")
    for i, path in enumerate(paths.values()):  # settle in this order: runs before their samples
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    return paths


def _job_of(request: dg.RunRequest) -> str:
    return request.job_name


@pytest.mark.slow
def test_sensor_routes_each_kind_to_its_job_and_a_bad_run_file_fails_alone(
    tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    _mixed_drop(landing)
    defs = build_definitions(lake_dir=str(lake_dir), landing_url=str(landing))
    harness = SensorHarness(landing, sqlite_instance)
    assert harness.tick().run_requests == []
    requests = harness.tick().run_requests
    by_file = {Path(r.tags["tracseq/source_path"]).name: r for r in requests}
    assert {name: _job_of(r) for name, r in by_file.items()} == {
        "a_runs.csv": "ingest_run_export",
        "a_runs_broken.jsonl": "ingest_run_export",
        "b_samples.csv": "ingest_lab_export",
        "c_runs.jsonl": "ingest_run_export",
    }
    assert sorted(sqlite_instance.get_dynamic_partitions("run_exports")) == sorted(
        by_file[n].partition_key for n in ("a_runs.csv", "a_runs_broken.jsonl", "c_runs.jsonl")
    )
    assert sqlite_instance.get_dynamic_partitions("lab_exports") == [by_file["b_samples.csv"].partition_key]

    # The daemon would launch these in any order; samples first here, as `tracseq ingest` does.
    results = {}
    for name in ("b_samples.csv", "a_runs.csv", "a_runs_broken.jsonl", "c_runs.jsonl"):
        request = by_file[name]
        results[name] = defs.resolve_job_def(request.job_name).execute_in_process(
            instance=sqlite_instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
        )
    assert [n for n, r in results.items() if not r.success] == ["a_runs_broken.jsonl"]
    lake = Lake(lake_dir)
    runs = lake.read_validated_runs()
    assert sorted(zip(runs["run_id"], runs["sample_id"])) == [
        ("RUN-2025-00042", sample_id(0)),
        ("RUN-2025-00042", sample_id(1)),
        ("RUN-2025-00043", sample_id(1)),
        ("RUN-2025-00050", sample_id(0)),
    ]
    assert len(lake.read_validated()) == 4 and "run_id" not in lake.read_validated().columns  # kinds apart
    quarantined = lake.read_quarantine("runs").sort_values(ROW_NUMBER)
    assert quarantined["_row_number"].tolist() == [4, 5]
    assert quarantined["_rules"].tolist() == ["after_receipt:library_prep_ts", "unknown_sample"]
    assert "unknown sample" in quarantined["_reasons"].iloc[1]
    assert {r.kind for r in lake.current_records("runs")} == {"runs"} and len(lake.current_records("runs")) == 2
    check = dg.AssetCheckKey(dg.AssetKey("validated_runs"), "accepted_rows_meet_contract")
    evaluations = [
        e.dagster_event.event_specific_data
        for e in sqlite_instance.all_logs(results["a_runs.csv"].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    assert [(e.asset_check_key, e.passed) for e in evaluations] == [(check, True)]


@pytest.mark.slow
def test_ingest_folder_samples_first_idempotent_and_a_fixed_run_file_supersedes(
    tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    paths = _mixed_drop(landing)
    stray = write_csv(landing / "d_notes.csv", [{"sample_id": sample_id(0), "comment": "call back"}])
    defs = build_definitions(lake_dir=str(lake_dir), landing_url=str(landing))

    first = {Path(o.path).name: o for o in ingest_folder(landing, defs=defs, instance=sqlite_instance)}
    assert list(first)[0] == "b_samples.csv"  # samples before runs, whatever the folder order
    assert {n: (o.kind, o.status) for n, o in first.items()} == {
        "b_samples.csv": ("samples", "ingested"),
        "a_runs.csv": ("runs", "ingested"),
        "a_runs_broken.jsonl": ("runs", "failed"),
        "c_runs.jsonl": ("runs", "ingested"),
        "d_notes.csv": ("samples", "failed"),
    }
    assert (first["a_runs.csv"].rows_accepted, first["a_runs.csv"].rows_quarantined) == (3, 2)
    assert "a_runs_broken.jsonl: line 71: invalid JSON" in first["a_runs_broken.jsonl"].error
    assert (
        "not a known export kind" in first["d_notes.csv"].error
        and "as a sequencing run export it lacks run_id" in first["d_notes.csv"].error
    )

    again = ingest_folder(landing, defs=defs, instance=sqlite_instance)
    assert {Path(o.path).name: o.status for o in again if o.status != "failed"} == dict.fromkeys(
        ["b_samples.csv", "a_runs.csv", "c_runs.jsonl"], "unchanged"
    )
    lake = Lake(lake_dir)
    assert len(lake.read_validated_runs()) == 4

    # The lab fixes the run file (the unknown sample was a typo) and drops it again under its name.
    rows = pd.read_csv(paths["runs"], dtype=str, keep_default_na=False).to_dict("records")
    rows[3]["sample_id"] = sample_id(3)
    write_csv(paths["runs"], rows, RUN_COLUMNS)
    fixed = {Path(o.path).name: o for o in ingest_folder(landing, defs=defs, instance=sqlite_instance)}
    assert fixed["a_runs.csv"].status == "ingested" and (
        fixed["a_runs.csv"].rows_accepted,
        fixed["a_runs.csv"].rows_quarantined,
    ) == (4, 1)
    runs = lake.read_validated_runs()
    assert len(runs) == 5 and not runs.duplicated(["run_id", "sample_id"]).any()  # replaced, not added
    assert lake.read_quarantine("runs")["_rules"].tolist() == ["after_receipt:library_prep_ts"]
    assert stray.exists() and paths["bad_runs"].exists()  # nothing in the landing folder is touched


@pytest.mark.slow
def test_the_run_example_quarantines_one_row_per_rule_it_breaks(tmp_path: Path, sqlite_instance: dg.DagsterInstance) -> None:
    """examples/exports/run_manual_entries.csv, beside the sample examples it refers to, as make demo drops it."""
    examples = Path(__file__).resolve().parent.parent / "examples" / "exports"
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    for name in ("lims_manual_entries.csv", "run_manual_entries.csv"):
        (landing / name).write_bytes((examples / name).read_bytes())
    defs = build_definitions(lake_dir=str(lake_dir), landing_url=str(landing))
    outcomes = {Path(o.path).name: o for o in ingest_folder(landing, defs=defs, instance=sqlite_instance)}
    runs = outcomes["run_manual_entries.csv"]
    assert (runs.kind, runs.status, runs.rows_accepted, runs.rows_quarantined) == ("runs", "ingested", 2, 6)
    quarantined = Lake(lake_dir).read_quarantine("runs")
    assert quarantined["_row_number"].tolist() == [4, 5, 6, 7, 8, 9]
    assert quarantined["_rules"].tolist() == [
        "unknown_sample", "after_receipt:library_prep_ts", "order:run_start_ts<=run_end_ts", "range:q30_pct",
        "enum:run_status", "pattern:run_id",
    ]  # fmt: skip
