"""Example lab documents with known facts on known pages.

``tracseq documents generate-examples`` writes them for the demo; the tests and the
retrieval benchmark use them because every fact's file and page is known
(``EXAMPLE_QUESTIONS``). They cover what a lab drops: a multi-page SOP with a table and a
scanned page, a QC report, the lab's own submission-form template, a free-form
submission e-mail, and DOCX, HTML, Markdown and plain-text notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tracseq_dagster.documents.pdf import PageLayout, scanned_page, write_pdf


@dataclass(frozen=True)
class ExampleQuestion:
    question: str
    file_name: str
    page: int
    answer_contains: str  # a fact the cited passage must hold


EXAMPLE_QUESTIONS: tuple[ExampleQuestion, ...] = (
    ExampleQuestion("At what temperature are DNA extracts stored?", "SOP-014-nucleic-acid-extraction.pdf", 2, "-20"),
    ExampleQuestion("Which freezer holds the RNA extracts?", "SOP-014-nucleic-acid-extraction.pdf", 2, "FRZ-07"),
    ExampleQuestion("How many freeze-thaw cycles may an extract go through?", "SOP-014-nucleic-acid-extraction.pdf", 2, "three"),
    ExampleQuestion("What is the minimum RIN for RNA sequencing?", "SOP-014-nucleic-acid-extraction.pdf", 3, "7.0"),
    ExampleQuestion("What minimum volume of cfDNA is required?", "SOP-014-nucleic-acid-extraction.pdf", 3, "25"),
    ExampleQuestion("How fast and how long are blood tubes centrifuged?", "SOP-014-nucleic-acid-extraction.pdf", 4, "4000"),
    ExampleQuestion("Which rotor does the centrifuge use?", "SOP-014-nucleic-acid-extraction.pdf", 4, "R-77"),
    ExampleQuestion(
        "Which blood collection tubes does the extraction SOP accept?", "SOP-014-nucleic-acid-extraction.pdf", 1, "EDTA"
    ),
    ExampleQuestion("How many reads did sequencing run R-2025-031 yield?", "QC-report-run-R-2025-031.pdf", 1, "412"),
    ExampleQuestion("What fraction of bases reached Q30 in run R-2025-031?", "QC-report-run-R-2025-031.pdf", 1, "91.4"),
    ExampleQuestion("Why did sample TS-2025-000117 fail QC?", "QC-report-run-R-2025-031.pdf", 2, "DIN"),
    ExampleQuestion("Which flow cell was used for run R-2025-031?", "QC-report-run-R-2025-031.pdf", 2, "FC-88K2"),
    ExampleQuestion("Who is the principal investigator of project PRJ-0042?", "sample-submission-PRJ-0042.pdf", 1, "Okafor"),
    ExampleQuestion("Which sequencing service was requested for PRJ-0042?", "sample-submission-PRJ-0042.pdf", 1, "Whole genome"),
    ExampleQuestion("What personal protective equipment is required in the BSL-2 room?", "biosafety-BSL2.docx", 1, "lab coat"),
    ExampleQuestion("How often is the biosafety cabinet certified?", "biosafety-BSL2.docx", 1, "annually"),
    ExampleQuestion("Where is freezer FRZ-03 located?", "freezer-map.html", 1, "room 2.114"),
    ExampleQuestion("How much input DNA does the library prep kit need?", "library-prep-notes.md", 1, "200 ng"),
    ExampleQuestion("How many PCR cycles are used for low input libraries?", "library-prep-notes.md", 1, "12"),
    ExampleQuestion("When was the NovaSeq laser last serviced?", "instrument-maintenance-log.txt", 1, "2025-02-11"),
)

# Questions the documents do not answer: the evidence threshold must turn these away.
UNANSWERABLE_QUESTIONS: tuple[str, ...] = (
    "What is the capital of Australia?",
    "Who won the football world cup in 2014?",
    "How do I bake sourdough bread?",
    "What is the price of a train ticket to Paris?",
    "Which programming language was created by Guido van Rossum?",
    "How tall is Mount Everest?",
)

SUBMISSION_COLUMNS: tuple[str, ...] = ("Sample ID", "Sample type", "Volume (uL)", "Concentration (ng/uL)")
SUBMISSION_SAMPLES: tuple[tuple[str, str, str, str], ...] = (
    ("TS-2025-000101", "DNA", "50", "25.4"),
    ("TS-2025-000102", "DNA", "45", "31.0"),
    ("TS-2025-000103", "RNA", "30", "88.2"),
    ("TS-2025-000104", "cfDNA", "25", "0.9"),
)


def sop_extraction_pdf(folder: Path) -> Path:
    """Four pages: scope (p1), storage (p2), a table of thresholds (p3), a scanned page (p4)."""
    layout = PageLayout()
    layout.title("SOP-014 Nucleic Acid Extraction from Whole Blood")
    layout.paragraph("Standard operating procedure, version 3, approved by the laboratory quality manager.")
    layout.heading("Purpose and scope")
    layout.paragraph(
        "This standard operating procedure describes the extraction of genomic DNA and total RNA from "
        "human whole blood. It applies to blood collected in EDTA tubes (purple cap); heparin tubes "
        "are rejected because heparin inhibits the PCR steps of library preparation."
    )
    layout.heading("Responsibilities")
    layout.paragraph(
        "Laboratory technicians trained on this procedure perform the extraction. The duty scientist "
        "reviews every batch record before extracts are released to sequencing."
    )
    layout.new_page()
    layout.heading("Storage of extracts")
    layout.paragraph(
        "DNA extracts are stored at -20 C in freezer FRZ-03, rack R2. RNA extracts are stored at -80 C "
        "in freezer FRZ-07 and are thawed on ice only. An extract may go through at most three "
        "freeze-thaw cycles; after the third cycle it is re-extracted from the primary tube."
    )
    layout.heading("Labelling")
    layout.paragraph(
        "Every tube carries the sample identifier in the form TS-YYYY-NNNNNN, printed as a barcode, "
        "and the date of extraction. Hand-written labels are not accepted."
    )
    layout.new_page()
    layout.heading("Acceptance thresholds")
    layout.paragraph("Extracts must meet these minimum values before library preparation:")
    layout.table(
        ["Sample type", "Minimum integrity", "Minimum volume", "Minimum concentration"],
        [
            ["DNA", "DIN 7.0", "30 uL", "10 ng/uL"],
            ["RNA", "RIN 7.0", "20 uL", "25 ng/uL"],
            ["cfDNA", "not measured", "25 uL", "0.5 ng/uL"],
        ],
    )
    layout.paragraph("Extracts below a threshold are reported to the submitter before any sequencing starts.")
    scan = scanned_page(
        [
            "Centrifugation of blood tubes",
            "Centrifuge the EDTA tubes at 4000 g for 12 minutes",
            "at room temperature, using rotor R-77.",
            "Remove the plasma layer with a sterile pipette.",
        ]
    )
    return write_pdf(folder / "SOP-014-nucleic-acid-extraction.pdf", [*layout.pages, scan], title="SOP-014")


def qc_report_pdf(folder: Path) -> Path:
    layout = PageLayout()
    layout.title("Sequencing QC Report: Run R-2025-031")
    layout.heading("Run summary")
    layout.paragraph(
        "Run R-2025-031 was sequenced on the NovaSeq 6000 on 14 March 2025. The run yielded 412 million "
        "read pairs; 91.4 percent of bases reached Q30 or better. The PhiX spike-in error rate was 0.31 percent."
    )
    layout.new_page()
    layout.heading("Failed samples")
    layout.paragraph(
        "Sample TS-2025-000117 failed quality control because its DNA integrity number (DIN) was 3.1, "
        "below the threshold of 7.0. The submitter was asked for a new extract."
    )
    layout.heading("Consumables")
    layout.paragraph("The run used flow cell FC-88K2 and reagent kit lot 20250211-B.")
    return write_pdf(folder / "QC-report-run-R-2025-031.pdf", layout.pages, title="QC report R-2025-031")


def submission_form_lines(
    samples: tuple[tuple[str, str, str, str], ...] = SUBMISSION_SAMPLES,
    *,
    submitter: str = "Dr. Ana Ruiz",
    pi: str = "Prof. Lena Okafor",
    project: str = "PRJ-0042",
    service: str = "Whole genome sequencing, 30x coverage",
    submitted: str = "2025-03-04",
) -> tuple[list[str], list[str]]:
    """The lab's form template: labelled fields, then one line per sample."""
    fields = [
        "Form version: TSF-2",
        f"Submitter: {submitter}",
        f"Principal investigator: {pi}",
        f"Project: {project}",
        f"Requested service: {service}",
        f"Date submitted: {submitted}",
    ]
    rows = [" | ".join(SUBMISSION_COLUMNS)]
    rows += [" | ".join(sample) for sample in samples]
    return fields, rows


def submission_form_pdf(folder: Path, name: str = "sample-submission-PRJ-0042.pdf", **fields: str) -> Path:
    field_lines, rows = submission_form_lines(**fields)  # type: ignore[arg-type]
    layout = PageLayout()
    layout.title("TracSeq Sample Submission Form")
    for line in field_lines:
        layout.paragraph(line)
    layout.heading("Samples")
    layout.table(rows[0].split(" | "), [row.split(" | ") for row in rows[1:]])
    return write_pdf(folder / name, layout.pages, title="Sample submission form")


def free_form_submission_text(folder: Path) -> Path:
    """A submission written as an e-mail: only an LLM reads its fields."""
    text = (
        "Subject: samples for RNA-seq\n\n"
        "Hello sequencing team,\n\n"
        "I am sending two RNA samples from the liver cohort (project PRJ-0077) for poly-A RNA-seq. "
        "My PI is Dr. Samuel Berg. Sample TS-2025-000201 has 40 uL at 120 ng/uL and sample "
        "TS-2025-000202 has 35 uL at 95.5 ng/uL. They left our lab on 2025-04-02.\n\n"
        "Best regards,\nMaria Lindqvist\n"
    )
    path = folder / "submissions" / "email-submission-PRJ-0077.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def biosafety_docx(folder: Path) -> Path:
    from docx import Document

    document = Document()
    document.add_heading("Biosafety in the BSL-2 Laboratory", level=1)
    document.add_heading("Protective equipment", level=2)
    document.add_paragraph(
        "Everyone entering the BSL-2 room wears a closed lab coat, nitrile gloves and safety glasses. "
        "Gloves are changed after handling primary blood tubes."
    )
    document.add_heading("Biosafety cabinet", level=2)
    document.add_paragraph(
        "All open handling of human samples happens in the class II biosafety cabinet, which is "
        "certified annually by an external engineer and cleaned with 70 percent ethanol after use."
    )
    path = folder / "biosafety-BSL2.docx"
    document.save(str(path))
    return path


def freezer_map_html(folder: Path) -> Path:
    path = folder / "freezer-map.html"
    path.write_text(
        "<html><head><title>Freezer map</title></head><body>"
        "<h1>Freezer map of the sequencing lab</h1>"
        "<h2>Minus 20 freezers</h2><p>Freezer FRZ-03 stands in room 2.114, next to the extraction bench. "
        "It holds DNA extracts in racks R1 to R6.</p>"
        "<h2>Minus 80 freezers</h2><p>Freezer FRZ-07 stands in room 2.120 and is on the emergency power "
        "circuit. Its temperature alarm calls the duty scientist.</p>"
        "</body></html>"
    )
    return path


def library_prep_markdown(folder: Path) -> Path:
    path = folder / "library-prep-notes.md"
    path.write_text(
        "# Library preparation notes\n\n"
        "## Input requirements\n\n"
        "The PCR-free library prep kit needs 200 ng of input DNA in 50 uL of low-TE buffer. "
        "Below 200 ng, use the low input protocol.\n\n"
        "## Low input protocol\n\n"
        "Low input libraries are amplified with 12 PCR cycles and quantified by qPCR before pooling.\n"
    )
    return path


def maintenance_log_text(folder: Path) -> Path:
    path = folder / "instrument-maintenance-log.txt"
    path.write_text(
        "Instrument maintenance log\n\n"
        "NovaSeq 6000 (serial NS-4411): laser serviced on 2025-02-11 by the vendor engineer; "
        "the fluidics check passed.\n\n"
        "Centrifuge C-12: brushes replaced on 2025-01-20.\n"
    )
    return path


def generate_examples(folder: str | Path) -> list[Path]:
    """Write every example document under ``folder`` (deterministic bytes for the PDFs)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    return [
        sop_extraction_pdf(root),
        qc_report_pdf(root),
        submission_form_pdf(root),
        free_form_submission_text(root),
        biosafety_docx(root),
        freezer_map_html(root),
        library_prep_markdown(root),
        maintenance_log_text(root),
    ]
