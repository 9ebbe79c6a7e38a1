"""``tracseq storage recommend --input incoming.csv [--top 3] [--out placements.csv]``: where to store incoming samples.

The same recommender as ``POST /storage/recommend``, on the lake: the freezer state from every
accepted sample (``Lake.read_validated``), the excursion risk from the ``freezer_state`` asset's
output when it holds the served model's predictions (``operations/freezer_state.parquet``,
column ``excursion_risk_30d``), from the freezers' history otherwise; the answer says which.

The input is a CSV with a header: ``sample_type`` and ``project_id`` required,
``expected_retrieval`` (ISO date) and ``sample_id`` optional, other columns ignored; ``,`` ``;``
or tab separated, a UTF-8 BOM accepted. A bad row is one ``error:`` line naming the file, line
and column, exit code 2 (nothing is placed: a batch is placed jointly or not at all); a sample
that cannot be placed (no freezer at its temperature, no free position) is a row of the table
saying why, exit code 0.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tracseq_dagster import settings

if TYPE_CHECKING:  # annotations only: the command's start stays light
    import pandas as pd

    from tracseq_dagster.lake import Lake
    from tracseq_dagster.operations.placement_risk import RiskReport
    from tracseq_dagster.operations.storage_placement import IncomingSample

INPUT_EXIT_CODE = 2
storage_app = typer.Typer(help="Freezer storage: where to put incoming samples.", no_args_is_help=True)


class StorageInputError(ValueError):
    """An operator's mistake: said on one line, exit code 2."""


def read_incoming(path: Path) -> list[IncomingSample]:
    """The CSV's rows as incoming samples; a :class:`StorageInputError` naming the file, line and column of the first bad ones."""
    from pydantic import ValidationError

    from tracseq_dagster.serving.storage_routes import IncomingSampleRequest

    if not path.is_file():
        raise StorageInputError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise StorageInputError(f"{path}: the file is empty (expected a header with sample_type, project_id)")
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in ("sample_type", "project_id") if c not in header]
    if missing:
        raise StorageInputError(
            f"{path}: missing column(s) {', '.join(missing)} (the header has: {', '.join(header) or 'nothing'})"
        )
    wanted = set(IncomingSampleRequest.model_fields)
    problems, samples = [], []
    for row in reader:
        line = reader.line_num
        values = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k and k.strip() in wanted}
        if not any(values.values()):
            continue  # a blank line
        values = {k: v for k, v in values.items() if v not in ("", None)}
        try:
            samples.append(IncomingSampleRequest.model_validate(values).incoming())
        except ValidationError as error:
            for entry in error.errors(include_url=False, include_input=False):
                column = ".".join(map(str, entry["loc"])) or "row"
                problems.append(f"{path} line {line}, column {column}: {entry['msg']}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise StorageInputError("; ".join(problems[:5]) + more)
    if not samples:
        raise StorageInputError(f"{path}: no samples (only a header)")
    return samples


def lake_risk(lake: Lake, freezer_ids: list[str], state_as_of: pd.Timestamp) -> RiskReport:
    """The freezer_state asset's model risks when it wrote them, else history (placement_risk.excursion_risk)."""
    import pandas as pd

    from tracseq_dagster.operations.outputs import FREEZER_STATE
    from tracseq_dagster.operations.placement_risk import MODEL, RiskReport, excursion_risk, overall_source
    from tracseq_dagster.operations.storage_placement import FreezerRisk

    path = lake.operations_path(FREEZER_STATE)
    served: dict[str, FreezerRisk] = {}
    if path.exists():
        try:
            frame = pd.read_parquet(path)
            if "excursion_risk_30d" in frame:
                as_of = str(frame["as_of"].iloc[0]) if "as_of" in frame and len(frame) else "?"
                # The asset says where each risk came from (the champion's prediction or the history rule).
                said = frame["excursion_risk_source"] if "excursion_risk_source" in frame else pd.Series(None, index=frame.index)
                for freezer, p, source in zip(
                    frame["freezer_id"].astype(str), pd.to_numeric(frame["excursion_risk_30d"], errors="coerce"), said
                ):
                    if pd.notna(p):
                        named = str(source) if isinstance(source, str) and source else f"model {MODEL}"
                        served[freezer] = FreezerRisk(float(p), f"{named}, freezer_state of {as_of}")
        except Exception:  # an unreadable output: history answers instead
            served = {}
    samples = lake.read_validated()
    missing = [f for f in freezer_ids if f not in served]
    report = excursion_risk(samples, missing, state_as_of) if missing else RiskReport({}, "model")
    if not served:
        return report
    risk = {**report.risk, **{f: r for f, r in served.items() if f in freezer_ids}}
    notes = [n for n in report.notes if not n.startswith("no ")] if missing else []
    if not any(r.source.startswith(("predicted", "model")) for r in served.values()):
        notes.append(f"no {MODEL} champion: risk from history, no model")
    return RiskReport(risk, overall_source(risk), notes)


@storage_app.command("recommend")
def recommend_command(
    input_csv: Annotated[
        Path, typer.Option("--input", help="CSV of incoming samples: sample_type, project_id[, expected_retrieval, sample_id].")
    ],
    top: Annotated[int, typer.Option(min=1, max=10, help="Positions per sample: the chosen one and top-1 alternatives.")] = 3,
    out: Annotated[Path | None, typer.Option("--out", help="Write every answer (one row per position) to this CSV.")] = None,
    lake: Annotated[Path | None, typer.Option(help="Lake folder (default: $TRACSEQ_LAKE_DIR or data/lake).")] = None,
) -> None:
    """Recommend free freezer positions for incoming samples, placed jointly."""
    # Imported here: pandas and scipy would otherwise slow every other command's start.
    from rich.console import Console
    from rich.table import Table

    from tracseq_dagster.lake import Lake
    from tracseq_dagster.operations.freezer_state import freezer_state
    from tracseq_dagster.operations.storage_placement import NO_FREEZER, PLACED, placements_table, recommend

    try:
        incoming = read_incoming(input_csv)
        root = Path(lake) if lake else Path(settings.lake_dir())
        if not root.is_dir():
            raise StorageInputError(f"the lake folder {root} does not exist: run tracseq ingest first, or pass --lake")
        the_lake = Lake(root)
        samples = the_lake.read_validated()
        if samples.empty:
            raise StorageInputError(
                f"the lake {root} holds no accepted samples, so no freezer is known: run tracseq ingest first"
            )
    except StorageInputError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=INPUT_EXIT_CODE) from None
    state = freezer_state(samples)
    risk = lake_risk(the_lake, state.freezers["freezer_id"].astype(str).tolist(), state.as_of)
    placements = recommend(incoming, state, risk.risk, top=top)

    console = Console(width=200) if not Console().is_terminal else Console()
    counts = state.counts
    console.print(f"freezer state as of {state.as_of:%Y-%m-%d %H:%M} UTC: {counts['freezers']} freezers, {counts['free_positions']:,} "
                  f"free positions; excursion risk from {risk.source}")  # fmt: skip
    for note in risk.notes:
        console.print(f"note: {note}")
    table = Table("#", "sample", "type", "project", "position", "risk 30 d", "alternatives", "why")
    for p in placements:
        if p.chosen is None:
            table.add_row(str(p.index + 1), p.sample.sample_id or "", p.sample.sample_type, p.sample.project_id,
                          "[red]none[/red]", "", "", p.message)  # fmt: skip
            continue
        why = "; ".join(r for r in p.chosen.reasons[2:]) or p.chosen.reasons[0]
        table.add_row(str(p.index + 1), p.sample.sample_id or "", p.sample.sample_type, p.sample.project_id, p.chosen.location.text,
                      f"{p.chosen.excursion_risk:.1%}", ", ".join(a.location.text for a in p.alternatives), why)  # fmt: skip
    console.print(table)
    placed = sum(p.status == PLACED for p in placements)
    no_freezer = sum(p.status == NO_FREEZER for p in placements)
    console.print(f"placed {placed} of {len(placements)}" + (f"; {no_freezer} with no freezer at their temperature" if no_freezer else "")
                  + (f"; {len(placements) - placed - no_freezer} with no free position left" if len(placements) - placed - no_freezer else ""))  # fmt: skip
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        placements_table(placements).to_csv(out, index=False)
        console.print(f"wrote {out}")
