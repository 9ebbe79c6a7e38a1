"""The weekly QC report as a PDF, from the same :class:`QcReport` as the HTML.

fpdf2 (pure Python, no system libraries) lays the report out: the title, the summary or why there
is none, then every section's headline numbers, note, table and plot (the same PNG bytes as the
HTML embeds). Values are formatted with :func:`~tracseq_dagster.operations.qc_report.shown`, so the
PDF's text layer carries exactly the HTML's numbers. The font is matplotlib's DejaVu Sans (always
installed with matplotlib), a Unicode TrueType font: the core PDF fonts cannot write °C, µL or an en dash.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.fonts import FontFace

from tracseq_dagster.operations.qc_report import QcReport, shown

_FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONT = "DejaVu"


def _document(report: QcReport) -> FPDF:
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(report.title)
    pdf.set_creator("TracSeq Dagster")
    pdf.add_font(FONT, "", str(_FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font(FONT, "B", str(_FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.add_font(FONT, "I", str(_FONT_DIR / "DejaVuSans-Oblique.ttf"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    return pdf


def _paragraph(pdf: FPDF, text: str, size: float = 9, style: str = "") -> None:
    pdf.set_font(FONT, style, size)
    pdf.multi_cell(0, size * 0.5, text, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)


def render_pdf(report: QcReport) -> bytes:
    """The report as PDF bytes."""
    pdf = _document(report)
    _paragraph(pdf, report.title, 15, "B")
    _paragraph(pdf, f"{report.period} · generated {shown(report.generated_at)} UTC", 8)
    if report.summary.status == "generated":
        _paragraph(pdf, f"Summary. {report.summary.text}", 10)
    else:
        _paragraph(pdf, f"No plain-language summary: {report.summary.reason}", 8, "I")
    if not report.has_data:
        _paragraph(
            pdf,
            f"No data for {report.project} in {report.week.key}: no samples received, nothing quarantined, no anomaly.",
            9,
            "I",
        )
    heading = FontFace(emphasis="BOLD", fill_color=(242, 242, 242))
    for section in report.sections:
        pdf.ln(2)
        _paragraph(pdf, section.title, 12, "B")
        pdf.set_font(FONT, "", 8)
        if section.figures:
            with pdf.table(width=110, col_widths=(80, 30), align="LEFT", first_row_as_headings=False, line_height=4.5) as table:
                for label, value in section.figures.items():
                    row = table.row()
                    row.cell(label)
                    row.cell(shown(value), align="RIGHT")
            pdf.ln(1)
        if section.note:
            _paragraph(pdf, section.note, 8, "I")
        if section.rows:
            pdf.set_font(FONT, "", 7)
            with pdf.table(headings_style=heading, line_height=4, text_align="LEFT") as table:
                table.row(section.columns)
                for record in section.rows:
                    table.row([shown(record.get(c)) for c in section.columns])
            pdf.ln(1)
        if section.plot:
            pdf.image(io.BytesIO(section.plot), w=pdf.epw * 0.75, alt_text=section.plot_alt)
    return bytes(pdf.output())
