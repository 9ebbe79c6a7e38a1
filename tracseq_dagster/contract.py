"""The lab export contract: one row per sample, as DESIGN.md describes it.

This module is the single source of truth for column names, types, enums, ranges and
per-type rules of the sample export, held as one value, :data:`SAMPLE_CONTRACT` (an
:class:`~tracseq_dagster.export_contract.ExportContract`; the run export is its sibling,
:mod:`tracseq_dagster.run_contract`). The module-level names below (``COLUMNS``,
``CONTRACT_COLUMNS``, ``normalise_column_name`` ...) are views of it, kept for the code that
only ever meant samples. The parser (types), the row-level validator (quarantine), the Great
Expectations suite (asset checks), the generator and the feature code all read it.
"""

from __future__ import annotations

# Kind, ContractColumn and PANDAS_DTYPE_BY_KIND are shared by every contract; re-exported here.
from tracseq_dagster.export_contract import PANDAS_DTYPE_BY_KIND as PANDAS_DTYPE_BY_KIND
from tracseq_dagster.export_contract import ContractColumn as ContractColumn
from tracseq_dagster.export_contract import ExportContract as ExportContract
from tracseq_dagster.export_contract import Kind as Kind

SAMPLE_TYPES: tuple[str, ...] = ("DNA", "RNA", "cfDNA", "tissue", "blood", "saliva", "FFPE")
# RIN is measured on RNA extracts, DIN on DNA extracts. Tissue, blood and saliva are
# submitted for DNA work in this lab, so they carry DIN.
RNA_TYPES: tuple[str, ...] = ("RNA",)
DNA_TYPES: tuple[str, ...] = ("DNA", "cfDNA", "tissue", "blood", "saliva", "FFPE")
PRIORITIES: tuple[str, ...] = ("routine", "urgent")
QC_STATUSES: tuple[str, ...] = ("pass", "borderline", "fail")

# Storage set point per sample type (°C): where a sample of that type should be kept.
STORAGE_TARGET_C: dict[str, float] = {
    "DNA": -20.0,
    "RNA": -80.0,
    "cfDNA": -80.0,
    "tissue": -80.0,
    "blood": 4.0,
    "saliva": -20.0,
    "FFPE": 20.0,
}
# Absorbance ratios of a pure extract: 260/280 is 2.0 for RNA and 1.8 for DNA; 260/230 is 2.1.
A260_280_IDEAL_RNA = 2.0
A260_280_IDEAL_DNA = 1.8
A260_280_IDEAL: dict[str, float] = {
    **{t: A260_280_IDEAL_RNA for t in RNA_TYPES},
    **{t: A260_280_IDEAL_DNA for t in DNA_TYPES},
}
A260_230_IDEAL = 2.1
if set(STORAGE_TARGET_C) != set(SAMPLE_TYPES) or set(A260_280_IDEAL) != set(SAMPLE_TYPES):
    raise RuntimeError("STORAGE_TARGET_C and A260_280_IDEAL must cover exactly SAMPLE_TYPES")

SAMPLE_ID_PATTERN = r"TS-\d{4}-\d{6}"
# FREEZER/RACK/BOX/POSITION, e.g. FRZ-03/R2/B14/A7
STORAGE_LOCATION_PATTERN = r"[A-Z][A-Z0-9]*-\d{1,3}/R\d{1,3}/B\d{1,3}/[A-Z]\d{1,2}"

COLUMNS: tuple[ContractColumn, ...] = (
    ContractColumn("sample_id", Kind.STRING, True, "Sample identifier, unique across all exports", pattern=SAMPLE_ID_PATTERN),
    ContractColumn("project_id", Kind.STRING, True, "Project the sample belongs to"),
    ContractColumn("sample_type", Kind.ENUM, True, "Material type", allowed=SAMPLE_TYPES),
    ContractColumn("collection_ts", Kind.TIMESTAMP, True, "When the sample was collected"),
    ContractColumn("received_ts", Kind.TIMESTAMP, True, "When the lab received the sample"),
    ContractColumn("extraction_ts", Kind.TIMESTAMP, False, "When nucleic acid was extracted"),
    ContractColumn("sequencing_ts", Kind.TIMESTAMP, False, "When the sample was sequenced"),
    ContractColumn("storage_temp_c", Kind.FLOAT, True, "Storage temperature", unit="°C", minimum=-200, maximum=40),
    ContractColumn("temp_excursions", Kind.INT, True, "Recorded temperature excursions", minimum=0),
    ContractColumn("max_temp_deviation_c", Kind.FLOAT, True, "Largest excursion from the set point", unit="°C", minimum=0),
    ContractColumn("freeze_thaw_cycles", Kind.INT, True, "Freeze-thaw cycles", minimum=0, maximum=50),
    ContractColumn("concentration_ng_ul", Kind.FLOAT, True, "Nucleic acid concentration", unit="ng/µL", minimum=0),
    ContractColumn("volume_ul", Kind.FLOAT, True, "Volume", unit="µL", minimum=0, exclusive_minimum=True),
    ContractColumn("a260_280", Kind.FLOAT, True, "Absorbance ratio 260/280", minimum=0, maximum=5),
    ContractColumn("a260_230", Kind.FLOAT, True, "Absorbance ratio 260/230", minimum=0, maximum=5),
    ContractColumn("rin", Kind.FLOAT, False, "RNA integrity number (RNA types only)", minimum=1, maximum=10),
    ContractColumn("din", Kind.FLOAT, False, "DNA integrity number (DNA types only)", minimum=1, maximum=10),
    ContractColumn("storage_location", Kind.STRING, True, "FREEZER/RACK/BOX/POSITION", pattern=STORAGE_LOCATION_PATTERN),
    ContractColumn("box_occupancy", Kind.INT, True, "Positions used in the box", unit="positions", minimum=0, maximum=100),
    ContractColumn("operator_id", Kind.STRING, True, "Operator who handled the sample"),
    ContractColumn("site", Kind.STRING, True, "Collection site"),
    ContractColumn("priority", Kind.ENUM, True, "Processing priority", allowed=PRIORITIES),
    ContractColumn("qc_status", Kind.ENUM, False, "QC outcome; empty until QC'd (the label)", allowed=QC_STATUSES),
)

# Timestamps that must be in order when present: each pair is (earlier, later).
TIMESTAMP_ORDER: tuple[tuple[str, str], ...] = (
    ("collection_ts", "received_ts"),
    ("received_ts", "extraction_ts"),
    ("extraction_ts", "sequencing_ts"),
)

# Lineage columns the parser adds to every row (of every export kind); they name where a row came from.
FILE_HASH = "_file_hash"
SOURCE_FILE = "_source_file"
ROW_NUMBER = "_row_number"  # 1-based line in a CSV/JSONL file (header is line 1), record number in Parquet
LINEAGE_COLUMNS: tuple[str, ...] = (FILE_HASH, SOURCE_FILE, ROW_NUMBER)
# What a parse issue or a violation names as its column when no single column is at fault
# (a CSV row with more fields than the header: its surplus fields belong to no column).
WHOLE_ROW = "<row>"

# Headers a LIMS is known to send for contract columns (after normalisation).
COLUMN_ALIASES: dict[str, str] = {
    "sampleid": "sample_id",
    "sample": "sample_id",
    "projectid": "project_id",
    "project": "project_id",
    "type": "sample_type",
    "sampletype": "sample_type",
    "collected": "collection_ts",
    "collection_date": "collection_ts",
    "received": "received_ts",
    "received_date": "received_ts",
    "a260_280_ratio": "a260_280",
    "a260_230_ratio": "a260_230",
    "260_280": "a260_280",
    "260_230": "a260_230",
    "operator": "operator_id",
    "qc": "qc_status",
}


def _sample_type_rules():  # type: ignore[no-untyped-def]
    """RIN only on RNA types, DIN only on DNA types (the sample kind's extra rules).

    Imported here, when the rules are built: the rule classes import this module.
    """
    from tracseq_dagster.rules import OnlyForTypesRule  # noqa: PLC0415

    return (
        OnlyForTypesRule("rin_only_rna", "rin", RNA_TYPES, "RIN"),
        OnlyForTypesRule("din_only_dna", "din", DNA_TYPES, "DIN"),
    )


#: The sample export as one value: what the parser, the rules, the suite and the lake read.
SAMPLE_CONTRACT = ExportContract(
    name="samples",
    title="sample export",
    columns=COLUMNS,
    aliases=COLUMN_ALIASES,
    timestamp_order=TIMESTAMP_ORDER,
    key_columns=("sample_id",),
    extra_rules=_sample_type_rules,
)

#: Enumerated values are matched case-insensitively (labs write ``URGENT``, ``dna``, ``Pass``):
#: per enum column, the lower-case form of each allowed value -> the contract's spelling, which
#: is what the typed frame stores. The rules and the GX suite then compare exact spellings.
ENUM_SPELLINGS: dict[str, dict[str, str]] = SAMPLE_CONTRACT.enum_spellings
COLUMN_BY_NAME: dict[str, ContractColumn] = SAMPLE_CONTRACT.column_by_name
CONTRACT_COLUMNS: tuple[str, ...] = SAMPLE_CONTRACT.column_names
REQUIRED_COLUMNS: tuple[str, ...] = SAMPLE_CONTRACT.required_columns
TIMESTAMP_COLUMNS: tuple[str, ...] = SAMPLE_CONTRACT.names_of(Kind.TIMESTAMP)
FLOAT_COLUMNS: tuple[str, ...] = SAMPLE_CONTRACT.names_of(Kind.FLOAT)
INT_COLUMNS: tuple[str, ...] = SAMPLE_CONTRACT.names_of(Kind.INT)
NUMERIC_COLUMNS: tuple[str, ...] = FLOAT_COLUMNS + INT_COLUMNS
STRING_COLUMNS: tuple[str, ...] = SAMPLE_CONTRACT.names_of(Kind.STRING, Kind.ENUM)


def normalise_column_name(raw: str) -> str:
    """Map a header as a LIMS writes it ("Sample ID", "A260/280", "\\ufeffsample_id") to a sample contract name.

    Unknown headers are normalised the same way (lower snake case) and kept.
    """
    return SAMPLE_CONTRACT.normalise_column_name(raw)
