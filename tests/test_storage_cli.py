"""``tracseq storage recommend``: a CSV of incoming samples against a lake, through the real CLI app."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tracseq_dagster.cli import app
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.lake import Lake
from tracseq_dagster.operations.freezer_state import freezer_state
from tracseq_dagster.operations.outputs import FREEZER_STATE

runner = CliRunner()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("storage") / "lake")
    samples = generate_samples(1200, seed=9)
    lake.write_record("s" * 16, "samples.csv", len(samples))
    lake.write_table(lake.validated_path("s" * 16), samples)
    return lake


def _run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["storage", "recommend", *args])


def test_recommend_prints_a_table_and_writes_every_answer(lake: Lake, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming.csv"
    # Semicolons, a BOM, an extra column and a blank line: what a lab sends.
    incoming.write_text("\ufeffsample_id;sample_type;project_id;expected_retrieval;note\n"
                        "N1;RNA;PRJ-0001;2026-01-20;x\nN2;DNA;PRJ-0002;;\n\nN3;blood;PRJ-0001;;\n", encoding="utf-8")  # fmt: skip
    out = tmp_path / "placements.csv"
    result = _run("--input", str(incoming), "--top", "2", "--out", str(out), "--lake", str(lake.root))
    assert result.exit_code == 0, result.output
    assert "excursion risk from history" in result.output and "placed 3 of 3" in result.output
    table = pd.read_csv(out)
    assert table["sample_id"].tolist() == ["N1", "N1", "N2", "N2", "N3", "N3"] and table["rank"].tolist() == [1, 2] * 3
    chosen = table[table["rank"] == 1]
    assert chosen["location"].is_unique
    state = freezer_state(lake.read_validated())
    set_points = state.freezers.set_index("freezer_id")["set_point_c"]
    assert [set_points[loc.split("/")[0]] for loc in chosen["location"]] == [-80.0, -20.0, 4.0]
    assert all(loc in result.output for loc in chosen["location"])


def test_the_freezer_state_assets_model_risk_is_used_when_written(lake: Lake, tmp_path: Path) -> None:
    state = freezer_state(lake.read_validated())
    risk = {f: (0.9 if f != "FRZ-05" else 0.01) for f in state.freezers["freezer_id"]}
    frame = state.freezers.assign(excursion_risk_30d=state.freezers["freezer_id"].map(risk), as_of=state.as_of)
    root = tmp_path / "lake"
    copy = Lake(root)
    copy.write_record("s" * 16, "samples.csv", 1)
    copy.write_table(copy.validated_path("s" * 16), lake.read_validated())
    copy.write_table(copy.operations_path(FREEZER_STATE), frame)
    incoming = tmp_path / "incoming.csv"
    incoming.write_text("sample_type,project_id\nRNA,PRJ-0003\n")
    out = tmp_path / "placements.csv"
    result = _run("--input", str(incoming), "--top", "1", "--out", str(out), "--lake", str(root))
    assert result.exit_code == 0, result.output
    assert "excursion risk from model" in result.output
    row = pd.read_csv(out).iloc[0]
    assert row["location"].startswith("FRZ-05/") and "model freezer_excursion_risk" in row["reasons"]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("sample_type,project_id\nRNA,P1\nplasma,P2\n", "line 3, column sample_type: Input should be 'DNA'"),
        ("sample_type,project_id,expected_retrieval\nRNA,P1,next week\n", "line 2, column expected_retrieval"),
        ("sample_type\nRNA\n", "missing column(s) project_id"),
        ("sample_type,project_id\n", "no samples (only a header)"),
        ("", "the file is empty"),
    ],
)
def test_a_bad_csv_is_one_error_line_naming_the_place(lake: Lake, tmp_path: Path, content: str, said: str) -> None:
    incoming = tmp_path / "incoming.csv"
    incoming.write_text(content)
    result = _run("--input", str(incoming), "--lake", str(lake.root))
    assert result.exit_code == 2
    assert said in result.output and "Traceback" not in result.output
    assert str(incoming) in result.output or "missing" not in said


def test_an_empty_lake_and_a_missing_file_are_said(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming.csv"
    incoming.write_text("sample_type,project_id\nRNA,P1\n")
    (tmp_path / "empty").mkdir()
    empty = _run("--input", str(incoming), "--lake", str(tmp_path / "empty"))
    assert empty.exit_code == 2 and "holds no accepted samples" in empty.output
    missing = _run("--input", str(tmp_path / "nope.csv"), "--lake", str(tmp_path / "empty"))
    assert missing.exit_code == 2 and "no such file" in missing.output
