"""The weekly lab QC report: content from a hand-made lake, a week with no data, the HTML and the PDF
showing the same numbers, the summary's number check, and the summary with and without Ollama."""

from __future__ import annotations

import io
import socket
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pypdf
import pytest

from tests.fake_ollama import FakeOllama
from tests.qc_report_support import EMPTY_WEEK, PROJECT, WEEK, hand_made_lake, prediction_log_folder
from tracseq_dagster.documents.llm import OllamaChat
from tracseq_dagster.lake import Lake
from tracseq_dagster.operations.qc_report import IsoWeek, QcReport, ReportInputError, at_risk_section, build_report, shown
from tracseq_dagster.operations.report_files import produce_report, read_predictions
from tracseq_dagster.operations.report_html import render_html
from tracseq_dagster.operations.report_pdf import render_pdf
from tracseq_dagster.operations.report_summary import check_summary, invented_numbers, numbers_in


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """Read only by the tests (each writing test makes its own)."""
    return hand_made_lake(tmp_path_factory.mktemp("qc-lake") / "lake")


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prediction_log_folder(tmp_path_factory.mktemp("qc-log") / "prediction_log")


ADVISED: list[list[str]] = []


def _advisor(samples: pd.DataFrame) -> dict[str, list[str]]:
    ADVISED.append(sorted(samples["sample_id"]))
    return {s: [f"Re-extract {s}."] for s in samples["sample_id"]}


@pytest.fixture(scope="module")
def report(lake: Lake, log_dir: Path) -> QcReport:
    """The week's report with the prediction log and an advisor, built once for the content tests."""
    return report_of(lake, log_dir, advisor=_advisor)


def report_of(lake: Lake, log_dir: Path | None, week: str = WEEK, advisor=None) -> QcReport:  # type: ignore[no-untyped-def]
    predictions, note = read_predictions(str(log_dir) if log_dir else None, IsoWeek.parse(week))
    return build_report(lake, week, PROJECT, predictions=predictions, predictions_note=note, advisor=advisor)


def report_samples(lake: Lake) -> pd.DataFrame:
    """The project's samples received in the week, as the report selects them."""
    samples = lake.read_validated()
    week = IsoWeek.parse(WEEK)
    return samples[
        (samples["project_id"] == PROJECT) & (samples["received_ts"] >= week.start) & (samples["received_ts"] < week.end)
    ]


class _Text(HTMLParser):
    """The visible text of an HTML page (no style, no attributes such as the base64 images)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self._skip = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._skip = False

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def pdf_text(data: bytes) -> str:
    return " ".join(" ".join(page.extract_text() or "" for page in pypdf.PdfReader(io.BytesIO(data)).pages).split())


# -- weeks -----------------------------------------------------------------------------------


def test_iso_week_bounds_and_bad_weeks() -> None:
    week = IsoWeek.parse("2026-W49")
    assert (week.start, week.end) == (pd.Timestamp("2026-11-30", tz="UTC"), pd.Timestamp("2026-12-07", tz="UTC"))
    assert IsoWeek.parse("2026-W53").start == pd.Timestamp("2026-12-28", tz="UTC")  # 2026 has 53 ISO weeks
    assert IsoWeek.parse(" 2026-w49 ") == week
    with pytest.raises(ReportInputError, match="2025 has weeks W01 to W52"):
        IsoWeek.parse("2025-W53")
    with pytest.raises(ReportInputError, match="like 2026-W49"):
        IsoWeek.parse("2026-49")


# -- content ---------------------------------------------------------------------------------


def test_samples_received_and_quarantined_by_rule(report: QcReport) -> None:
    received = report.section("received")
    # Three of P012 in the week (Sunday 23:30 included, the Sunday before not, another project not).
    assert received.figures["samples received"] == 3
    assert (received.figures["QC pass"], received.figures["QC fail"], received.figures["not yet QC'd"]) == (1, 1, 1)
    assert received.figures["urgent"] == 1
    assert {r["sample type"]: r["samples"] for r in received.rows} == {"DNA": 2, "RNA": 1}
    assert received.plot and received.plot.startswith(b"\x89PNG")
    quarantined = report.section("quarantined")
    assert quarantined.figures["rows quarantined"] == 2  # P099's row and the row without a project are not P012's
    assert {r["rule"]: r["rows"] for r in quarantined.rows} == {"volume_positive": 2, "rin_range": 1}
    assert "1 quarantined rows" in (quarantined.note or "")


def test_at_risk_samples_from_the_latest_prediction_with_recommendations(report: QcReport) -> None:
    section = report.section("at_risk")
    # Sample 1's low score was superseded by a high one; sample 5 is another project's.
    assert [r["sample"] for r in section.rows] == ["TS-2026-000002", "TS-2026-000003"]
    assert [r["category"] for r in section.rows] == ["low", "medium"]
    assert section.figures["samples scored"] == 3
    assert ADVISED == [["TS-2026-000002", "TS-2026-000003"]]  # only the at-risk samples are sent for advice
    assert section.rows[0]["recommendations"] == "Re-extract TS-2026-000002."


def test_a_failing_advisor_costs_the_recommendations_only(lake: Lake, log_dir: Path) -> None:
    def advisor(samples: pd.DataFrame) -> dict[str, list[str]]:
        raise ConnectionError("connection refused")

    predictions, _ = read_predictions(str(log_dir), IsoWeek.parse(WEEK))
    received = report_samples(lake)
    section = at_risk_section(received, predictions, None, advisor)
    assert len(section.rows) == 2
    assert "Recommendations unavailable: connection refused" in (section.note or "")


def test_forecasts_anomalies_storage_and_demand(report: QcReport) -> None:
    forecasts = report.section("forecasts")
    assert forecasts.figures["runs forecast"] == 2
    assert forecasts.figures["mean predicted P(run pass)"] == pytest.approx(0.6)
    assert forecasts.figures["median predicted turnaround (h)"] == pytest.approx(60.0)
    assert forecasts.figures["runs ended this week"] == 3  # the run ending on 2026-12-08 is the next week's
    assert forecasts.figures["realised pass rate"] == pytest.approx(2 / 3)
    anomalies = report.section("anomalies")
    assert [r["entity"] for r in anomalies.rows] == ["TS-2026-000002", "FRZ-02"]  # not P099's, not next week's
    assert (anomalies.figures["alerts this week"], anomalies.figures["alerts undelivered"]) == (2, 1)
    storage = report.section("storage")
    assert storage.rows[0] == {
        "freezer": "FRZ-01",
        "positions": 200,
        "occupied": 186,
        "occupancy": pytest.approx(0.93),
        "fills on": pd.Timestamp("2027-01-15").date(),
    }
    assert storage.figures["freezers above 90% full"] == 1
    demand = report.section("demand")
    assert demand.figures["samples forecast"] == 33  # the lab total's own forecast, not the parts' 32
    assert {r["sample type"]: r["forecast"] for r in demand.rows} == {"DNA": 22, "RNA": 10}
    assert (demand.figures["runs needed"], demand.figures["instrument-weeks over capacity"]) == (4, 1)  # "all" not counted


def test_missing_operations_outputs_and_log_are_said_not_fatal(tmp_path: Path) -> None:
    lake = hand_made_lake(tmp_path / "lake", operations=False)
    report = report_of(lake, None)
    for key, name in (("anomalies", "anomalies"), ("storage", "storage_utilisation"), ("demand", "demand_forecast")):
        assert report.section(key).note == f"{name}.parquet does not exist yet (its asset has not run)."
    assert "no prediction log configured" in (report.section("at_risk").note or "")


def test_a_week_with_no_data_is_a_valid_report_that_says_so(lake: Lake, log_dir: Path) -> None:
    report = report_of(lake, log_dir, week=EMPTY_WEEK)
    assert not report.has_data
    assert report.section("received").figures == {"samples received": 0}
    assert report.section("received").note == "No samples of this project were received this week."
    text = html_text(render_html(report))
    assert f"No data for {PROJECT} in {EMPTY_WEEK}" in text
    assert f"No data for {PROJECT} in {EMPTY_WEEK}" in pdf_text(render_pdf(report))


def test_unknown_project_is_a_clear_error(lake: Lake) -> None:
    with pytest.raises(ReportInputError, match=r"project 'P404' has no accepted sample .*known projects: P012, P099"):
        build_report(lake, WEEK, "P404")


# -- renderings --------------------------------------------------------------------------------


def test_html_and_pdf_show_the_same_numbers(report: QcReport) -> None:
    facts = set(numbers_in(report.facts()))
    html, pdf = html_text(render_html(report)), pdf_text(render_pdf(report))
    assert facts - set(numbers_in(html)) == set()
    assert facts - set(numbers_in(pdf)) == set()
    for section in report.sections:  # every headline, as a label followed by its value, in both
        for label, value in section.figures.items():
            assert f"{label} {shown(value)}" in html, (section.key, label)
            assert f"{label} {shown(value)}" in pdf, (section.key, label)
    plots = sum(1 for s in report.sections if s.plot)
    assert plots == 6 and render_html(report).count("data:image/png;base64,") == plots
    assert sum(len(page.images) for page in pypdf.PdfReader(io.BytesIO(render_pdf(report))).pages) == plots


def test_html_escapes_values_from_the_exports(tmp_path: Path) -> None:
    lake = hand_made_lake(tmp_path / "lake")
    frame = pd.read_parquet(lake.quarantine_path("s" * 16))
    frame.loc[0, "_rules"] = "<script>alert(1)</script>"
    lake.write_table(lake.quarantine_path("s" * 16), frame)
    html = render_html(report_of(lake, None))
    assert "<script>" not in html and "&lt;script&gt;" in html


# -- the summary -------------------------------------------------------------------------------

FAITHFUL = (
    "Project P012 received 3 samples in week 49; 2 rows were quarantined, mostly for volume_positive. "
    "Two samples are at risk, and freezer FRZ-01 is 93% full (1 freezer above 90%)."
)


def test_summary_check_rejects_an_invented_number_and_accepts_a_faithful_summary(report: QcReport) -> None:
    assert invented_numbers(FAITHFUL, report) == []
    assert check_summary(FAITHFUL, report).status == "generated"
    invented = "Project P012 received 17 samples and 2 rows were quarantined."
    assert invented_numbers(invented, report) == ["17"]
    rejected = check_summary(invented, report)
    assert rejected.status == "rejected" and "(17)" in (rejected.reason or "")
    assert invented_numbers("Nineteen samples were late.", report) == ["19"]  # number words count too
    assert invented_numbers("Occupancy is 42.5%.", report) == ["42.5%"]


def test_summary_from_ollama_appears_at_the_top(tmp_path: Path, lake: Lake, log_dir: Path) -> None:
    with FakeOllama(reply=lambda messages, fmt: FAITHFUL) as fake:
        files = produce_report(lake, WEEK, PROJECT, tmp_path / "out", prediction_log=str(log_dir), chat=OllamaChat(host=fake.url))
        prompt = fake.requests[-1][1]["messages"][-1]["content"]
    assert files.report.summary.status == "generated"
    assert "samples received: 3" in prompt and "rows quarantined: 2" in prompt  # the prompt holds the report's numbers
    html = html_text(files.html.read_text())
    assert html.index("Summary. Project P012 received 3 samples") < html.index("Samples received")
    assert "Project P012 received 3 samples in week 49" in pdf_text(files.pdf.read_bytes())
    assert files.html == tmp_path / "out" / WEEK / f"{PROJECT}.html"


def test_a_summary_quoting_another_number_is_left_out_and_said(tmp_path: Path, lake: Lake) -> None:
    with FakeOllama(reply=lambda messages, fmt: "P012 received 41 samples this week.") as fake:
        files = produce_report(lake, WEEK, PROJECT, tmp_path / "out", chat=OllamaChat(host=fake.url))
    assert files.report.summary.status == "rejected"
    assert "quoted numbers that are not in the report (41), so it was left out" in html_text(files.html.read_text())


def test_without_ollama_the_report_is_complete_and_says_why(tmp_path: Path, lake: Lake, log_dir: Path) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    files = produce_report(lake, WEEK, PROJECT, tmp_path / "out", prediction_log=str(log_dir),
                           chat=OllamaChat(host=f"http://127.0.0.1:{port}", timeout_s=5))  # fmt: skip
    assert files.report.summary.status == "unavailable"
    html = html_text(files.html.read_text())
    assert f"No plain-language summary: Ollama is not reachable at http://127.0.0.1:{port}" in html
    assert all(s.title in html for s in files.report.sections)
    assert "samples received 3" in pdf_text(files.pdf.read_bytes())


# -- through Dagster -----------------------------------------------------------------------------


@pytest.mark.slow
def test_weekly_schedule_and_a_partition_materialized_on_an_embedded_instance(tmp_path: Path, sqlite_instance) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    import dagster as dg

    from assets.operations.qc_report import REPORT_PROJECTS, lab_qc_report, lab_qc_report_schedule
    from resources import LakeResource, OllamaResource, PredictionLogResource

    lake = hand_made_lake(tmp_path / "lake")
    log = prediction_log_folder(tmp_path / "log")
    # Monday 2026-12-07 06:00: the report of the week that ended, for each project that received samples.
    context = dg.build_schedule_context(instance=sqlite_instance, scheduled_execution_time=datetime(2026, 12, 7, 6, tzinfo=UTC),
                                        resources={"lake": LakeResource(root=str(lake.root))})  # fmt: skip
    requests = lab_qc_report_schedule(context)
    assert sorted(r.partition_key for r in requests) == ["P012|2026-11-30", "P099|2026-11-30"]  # dimensions in name order
    assert sorted(sqlite_instance.get_dynamic_partitions(REPORT_PROJECTS.name)) == ["P012", "P099"]

    with FakeOllama(reply=lambda messages, fmt: FAITHFUL) as fake:
        result = dg.materialize(
            [lab_qc_report],
            partition_key=dg.MultiPartitionKey({"week": "2026-11-30", "project": PROJECT}),
            instance=sqlite_instance,
            resources={
                "lake": LakeResource(root=str(lake.root)),
                "prediction_log": PredictionLogResource(url=str(log)),
                "ollama": OllamaResource(host=fake.url),
            },
        )
    assert result.success
    metadata = result.asset_materializations_for_node("lab_qc_report")[0].metadata
    assert metadata["week"].value == WEEK and metadata["summary_status"].value == "generated"
    assert (metadata["count_received"].value, metadata["count_quarantined"].value, metadata["count_at_risk"].value) == (3, 2, 2)
    html = Path(metadata["html"].value)
    assert html == lake.root / "operations" / "reports" / WEEK / f"{PROJECT}.html"
    assert "Summary. Project P012 received 3 samples" in html_text(html.read_text())
    assert pdf_text(Path(metadata["pdf"].value).read_bytes()).startswith("Lab QC report: P012, week 2026-W49")
    assert metadata["plot"].value.startswith("![samples received per day")


@pytest.mark.slow
def test_recommendations_come_from_the_served_sample_quality_route(tmp_path: Path) -> None:
    """The advisor's request is what the real catalog route validates, and its answer's recommendations land in the report."""
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from tests.catalog_support import generated_lab, pack
    from tracseq_dagster.features import compute_features
    from tracseq_dagster.models.sample_quality import labelled_rows_from_features
    from tracseq_dagster.operations.report_files import ServiceAdvisor
    from tracseq_dagster.serving.catalog_predictor import ServedCatalog
    from tracseq_dagster.serving.catalog_routes import CatalogService, catalog_routes

    samples, _ = generated_lab(1200, seed=5)
    features = compute_features(samples, samples, as_of=None).reset_index()
    pack(tmp_path / "bundle", "sample_quality", labelled_rows_from_features(features), samples, None, ("logistic",))
    state = CatalogService(ServedCatalog(tmp_path / "bundle"))
    client = TestClient(Starlette(routes=catalog_routes(lambda: state)), raise_server_exceptions=False)
    risky = samples.sort_values("freeze_thaw_cycles", ascending=False).head(4)
    advice = ServiceAdvisor("http://testserver", client=client)(risky)
    assert sorted(advice) == sorted(risky["sample_id"])
    assert any(texts for texts in advice.values())  # the champion's risk factors worded as bench actions
    assert all(isinstance(t, str) and t for texts in advice.values() for t in texts)
    with pytest.raises(RuntimeError, match="answered 400"):  # a request the route refuses is an error, not advice
        ServiceAdvisor("http://testserver", client=client)(risky.drop(columns=["sample_type"]))
