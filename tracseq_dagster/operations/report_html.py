"""The weekly QC report as one self-contained HTML file (plots embedded as ``data:`` PNGs).

The template (``templates/qc_report.html.j2``, shipped in the package) only lays out what
:class:`~tracseq_dagster.operations.qc_report.QcReport` holds; every value is formatted here with
:func:`~tracseq_dagster.operations.qc_report.shown`, the same function the PDF uses, so both files
show the same numbers. Jinja's autoescaping keeps a sample id or a rule message from a lab export
from injecting markup.
"""

from __future__ import annotations

import base64
from functools import lru_cache

import jinja2

from tracseq_dagster.operations.qc_report import QcReport, shown


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("tracseq_dagster.operations", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: QcReport) -> str:
    """The report as HTML text."""
    sections = [
        {
            "key": s.key,
            "title": s.title,
            "figures": [(label, shown(value)) for label, value in s.figures.items()],
            "note": s.note,
            "columns": s.columns,
            "rows": [[shown(row.get(c)) for c in s.columns] for row in s.rows],
            "plot": base64.b64encode(s.plot).decode("ascii") if s.plot else None,
            "plot_alt": s.plot_alt,
        }
        for s in report.sections
    ]
    template = _environment().get_template("qc_report.html.j2")
    return template.render(report=report, sections=sections, generated=shown(report.generated_at))
