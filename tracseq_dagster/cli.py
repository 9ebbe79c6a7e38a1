"""The ``tracseq`` command line."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from typer.core import TyperGroup

from tracseq_dagster.settings import ConfigurationError

if TYPE_CHECKING:  # Dagster imports in seconds: the commands import it when they need it
    import dagster as dg

#: Exit code of an operator's mistake (a setting, a folder, an unreachable server), as for a usage error.
CONFIGURATION_EXIT_CODE = 2


class _Commands(TyperGroup):
    """The command group: an operator's mistake ends the command with one line on stderr and exit 2.

    Every command and sub-command runs inside this ``invoke``, so the rule holds in one place:
    :class:`ConfigurationError` (a bad setting, folder, tag or unreachable server, found by the
    typed getters in :mod:`tracseq_dagster.settings`) and the known dependency failures that
    slip past those checks print ``error: <what is wrong>: <how to fix it>``, never a traceback.
    """

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except ConfigurationError as error:
            _fail_configuration(str(error))
        except Exception as error:
            message = _dependency_failure(error)
            if message is None:
                raise
            _fail_configuration(message)


def _fail_configuration(message: str) -> None:
    # Plain text, not rich: rich wraps at 80 columns when stderr is not a terminal.
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code=CONFIGURATION_EXIT_CODE)


def _dependency_failure(error: BaseException) -> str | None:
    """One line for a failure of a server the CLI talks to directly, else None (a bug: traceback)."""
    import os

    from tracseq_dagster.settings import redact

    chain = [error]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
        if len(chain) > 20:
            break
    names = {f"{type(e).__module__}.{type(e).__name__}" for e in chain}
    text = " ".join(str(e) for e in chain)
    if any(n.startswith("mlflow.") for n in names) and any(
        hint in text
        for hint in ("Max retries exceeded", "Connection refused", "ConnectionError", "timed out", "could not connect")
    ):
        uri = redact(os.getenv("MLFLOW_TRACKING_URI", "(the embedded store)"))
        return (
            f"the MLflow tracking server at MLFLOW_TRACKING_URI={uri} does not answer requests: "
            "check that an MLflow server (not another program) runs there, or fix MLFLOW_TRACKING_URI"
        )
    if any(n.startswith(("redis.exceptions.ConnectionError", "redis.exceptions.TimeoutError")) for n in names):
        return f"Redis at TRACSEQ_REDIS_URL={redact(os.getenv('TRACSEQ_REDIS_URL', ''))} cannot be reached: start it or fix TRACSEQ_REDIS_URL"
    return None


app = typer.Typer(
    cls=_Commands, help="TracSeq Dagster: lab exports in, validated point-in-time features out.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)


def progress_bars(*columns: ProgressColumn | str) -> Progress:
    """Progress bars of a long command: on stderr, and only when stderr is a terminal.

    A pipe or a log file gets the command's results and nothing else (the bars are disabled);
    when stdout is the same terminal, lines the command prints meanwhile appear above the bars.
    """
    return Progress(
        *columns,
        console=err_console,
        disable=not err_console.is_terminal,
        redirect_stdout=console.is_terminal,
        redirect_stderr=False,
    )


def _print_version(requested: bool) -> None:
    if requested:
        from importlib.metadata import version

        console.print(f"tracseq {version('tracseq-dagster')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the installed version and exit.")
    ] = False,
) -> None:
    """Options of the tracseq command itself (its commands have their own)."""


@app.command("generate-exports")
def generate_exports_command(
    rows: Annotated[int, typer.Option(help="Samples to generate in total.")] = 1000,
    format: Annotated[str, typer.Option("--format", help="csv, parquet or jsonl.")] = "csv",
    out: Annotated[Path, typer.Option(help="Folder to write the exports to.")] = Path("data/landing"),
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 0,
    files: Annotated[int, typer.Option(help="Number of export files to split the rows over.")] = 1,
    messy: Annotated[bool, typer.Option(help="Write what a real LIMS writes (separators, BOM, dates, extra columns).")] = False,
    id_offset: Annotated[int, typer.Option(help="First sample number minus one, to keep ids unique across calls.")] = 0,
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="samples (lims_export_*.FORMAT) or runs (runs_export_*.FORMAT): the sequencing runs of the "
            "samples that the same --rows, --seed and --id-offset generate, split over --files files.",
        ),
    ] = "samples",
) -> None:
    """Write synthetic LIMS exports that follow the export contracts (samples, or their sequencing runs)."""
    from tracseq_dagster.generator import generate_exports
    from tracseq_dagster.run_generator import generate_run_exports

    if format not in ("csv", "parquet", "jsonl"):
        raise typer.BadParameter(f"--format must be csv, parquet or jsonl, not {format!r}")
    writers = {"samples": generate_exports, "runs": generate_run_exports}
    if kind not in writers:
        raise typer.BadParameter(f"--kind must be samples or runs, not {kind!r}")
    paths = writers[kind](rows, format, out, seed=seed, files=files, messy=messy, id_offset=id_offset)
    for path in paths:
        console.print(f"wrote {path}")


@app.command("ingest")
def ingest_command(
    folder: Annotated[Path, typer.Argument(help="Folder of exports (CSV, Parquet, JSON Lines).")] = Path("data/landing"),
    lake: Annotated[Path | None, typer.Option(help="Lake folder (default: $TRACSEQ_LAKE_DIR or data/lake).")] = None,
    force: Annotated[bool, typer.Option(help="Re-ingest files whose bytes were already ingested.")] = False,
    features: Annotated[bool, typer.Option(help="Rebuild sample_features afterwards.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every Dagster event on the console.")] = False,
) -> None:
    """Materialize the ingest and feature assets for every export in FOLDER, without a UI.

    A run export that an earlier invocation ingested before its samples is validated again once
    its samples are accepted.
    """
    from assets.lab_exports.revalidation import revalidate_awaiting_run_exports
    from tracseq_dagster import settings
    from tracseq_dagster.definitions import build_definitions
    from tracseq_dagster.ingest import build_features, ingest_folder
    from tracseq_dagster.instance import get_instance
    from tracseq_dagster.landing import list_landing_files

    if not folder.is_dir():
        raise ConfigurationError(f"{folder} is not a folder: pass the folder holding the exports (tracseq ingest <folder>)")
    if lake is not None:
        settings.local_folder("--lake", lake, purpose="the lake")
    instance = get_instance()  # first: a wrong DAGSTER_HOME is the likeliest mistake
    defs = build_definitions(lake_dir=str(lake) if lake else None, landing_url=str(folder))
    log_level = "DEBUG" if verbose else "CRITICAL"  # failures are summarised below the table
    total = len(list_landing_files(str(folder)))
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("ingesting exports", total=total)
        outcomes = ingest_folder(
            folder,
            defs=defs,
            instance=instance,
            force=force,
            on_file=lambda _: progress.advance(task),
            log_level=log_level,
        )
    table = Table("file", "partition", "status", "accepted", "quarantined")
    for o in outcomes:
        colour = {"ingested": "green", "failed": "red", "unchanged": "dim"}[o.status]
        table.add_row(
            Path(o.path).name, o.file_hash, f"[{colour}]{o.status}[/]", _count(o.rows_accepted), _count(o.rows_quarantined)
        )
    console.print(table)
    for o in outcomes:
        if o.error:
            console.print(f"[red]✗[/] {o.error}", soft_wrap=True)
    # Samples go first within one invocation; a run export an earlier one ingested before its samples is validated again.
    with console.status("re-validating run exports whose samples arrived after them"):
        revalidated = revalidate_awaiting_run_exports(defs=defs, instance=instance, log_level=log_level)
    if revalidated:
        reaccepted = sum(r.rows_reaccepted for r in revalidated if r.success)
        console.print(
            f"run exports re-validated now that their samples are accepted: {len(revalidated)}, "
            f"run rows re-accepted: {reaccepted}"
        )
    for r in revalidated:
        if r.error:
            console.print(f"[red]✗[/] re-validating {r.export.source}: {r.error}", soft_wrap=True)
    if features:
        with console.status("building sample_features"):
            result = build_features(defs=defs, instance=instance, log_level=log_level)
        console.print("sample_features: " + ("[green]materialized[/]" if result.success else "[red]failed[/]"))
    console.print(f"Dagster instance: {instance.root_directory}; lake: {_resource(defs, 'lake').root}")
    failed = [o for o in outcomes if o.status == "failed"] + [r for r in revalidated if not r.success]
    if failed or (features and not result.success):
        raise typer.Exit(code=1)


@app.command("features")
def features_command(
    ids: Annotated[str, typer.Option("--ids", help="Comma-separated sample ids.")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Point in time, ISO 8601 (naive = UTC); default now.")] = None,
    lake: Annotated[Path | None, typer.Option(help="Lake folder (default: $TRACSEQ_LAKE_DIR or data/lake).")] = None,
    output: Annotated[str, typer.Option(help="table, csv or json.")] = "table",
) -> None:
    """Read features of samples as they stood at a point in time (the offline feature store)."""
    import pandas as pd

    from tracseq_dagster import settings
    from tracseq_dagster.feature_store import features_as_of
    from tracseq_dagster.lake import Lake

    wanted = [i.strip() for i in ids.split(",") if i.strip()]
    try:
        moment = None if as_of is None else pd.Timestamp(as_of)
    except ValueError as error:
        raise typer.BadParameter(f"--as-of {as_of!r} is not an ISO 8601 timestamp") from error
    frame = features_as_of(Lake(lake or settings.lake_dir()), wanted, moment)
    missing = sorted(set(wanted) - set(frame["sample_id"].astype(str)))
    if output == "csv":
        typer.echo(frame.to_csv(index=False), nl=False)
    elif output == "json":
        typer.echo(frame.to_json(orient="records", date_format="iso"))
    else:
        table = Table("feature", *[str(s) for s in frame["sample_id"]])
        for column in frame.columns.drop("sample_id"):
            table.add_row(column, *[_cell(v) for v in frame[column]])
        console.print(table)
    if missing:
        err_console.print(f"[yellow]not known at that time: {', '.join(missing)}[/]")
        raise typer.Exit(code=2 if len(missing) == len(wanted) else 0)


@app.command("feature-server")
def feature_server_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port (Feast's default 6566).")] = 6566,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Feast's feature server (``POST /get-online-features``) over the platform's store: the registry and
    online store of this environment (TRACSEQ_FEAST_REGISTRY, TRACSEQ_REDIS_URL, TRACSEQ_FEAST_PROJECT), the
    same configuration the code location applies and materialises with. The prediction service reads it
    (TRACSEQ_FEATURE_SERVER_URL)."""
    from tracseq_dagster.feature_repo.config import FeastSettings
    from tracseq_dagster.feature_repo.store import open_store

    open_store(FeastSettings.from_environment()).serve(host, port, no_access_log=True, workers=workers)


@app.command("automl")
def automl_command(
    csv: Annotated[Path, typer.Option("--csv", help="Table to learn from (CSV with a header row).")],
    target: Annotated[str, typer.Option("--target", help="Column to predict.")],
    budget_s: Annotated[float, typer.Option("--budget-s", help="Wall-clock budget of the whole run, seconds.")] = 60.0,
    task: Annotated[str, typer.Option("--task", help="auto, binary, multiclass or regression.")] = "auto",
    max_trials: Annotated[int | None, typer.Option("--max-trials", help="Trials per model family.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data, same trials.")] = 0,
    families: Annotated[str | None, typer.Option("--families", help="Comma-separated model families (default: all six).")] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Metric to optimise (default: roc_auc, roc_auc_ovr or rmse by task).")
    ] = None,
    final_fit: Annotated[
        str,
        typer.Option(
            "--final-fit", help="train: the model is fit on training rows; all: refit on holdout rows too after scoring."
        ),
    ] = "train",
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Processes that sweep side by side, one thread each (default: the cores)."),
    ] = None,
    validation: Annotated[
        str,
        typer.Option(
            "--validation",
            help="How trials are scored: cv (k folds), holdout (one split), or auto (holdout when the table is large for the budget).",
        ),
    ] = "auto",
) -> None:
    """Sweep the AutoML engine over any table and print the leaderboard and the holdout score."""
    from typing import NoReturn

    import optuna
    import pandas as pd

    from tracseq_dagster.automl import ALL_FAMILIES, AutoMLConfig, AutoMLInputError, run_automl

    def fail(message: str) -> NoReturn:
        err_console.print(f"[red]error:[/] {message}", soft_wrap=True)
        raise typer.Exit(code=2)

    try:
        frame = pd.read_csv(csv)
    except (OSError, ValueError) as error:  # missing file, empty file, unparsable CSV
        fail(f"cannot read {csv}: {error}")
    chosen = ALL_FAMILIES if families is None else tuple(f.strip() for f in families.split(",") if f.strip())
    config = AutoMLConfig(
        target=target,
        task=task,  # type: ignore[arg-type]  # run_automl checks it and names a bad value
        time_budget_s=budget_s,
        max_trials=max_trials,
        seed=seed,
        families=chosen,  # type: ignore[arg-type]
        final_fit=final_fit,  # type: ignore[arg-type]  # checked by run_automl, as task
        metric=metric,  # type: ignore[arg-type]
        workers=workers,
        validation=validation,  # type: ignore[arg-type]  # checked by run_automl, as task
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial would drown the table
    try:
        with console.status(f"sweeping {', '.join(chosen)} for up to {budget_s:g} s"):
            result = run_automl(frame, config)
    except AutoMLInputError as error:
        fail(str(error))
    higher = "higher" if result.greater_is_better else "lower"
    table = Table(
        title=f"{result.task} · {result.metric} ({higher} is better) · {len(result.feature_columns)} features",
    )
    for header in (
        "#",
        "family",
        "trial",
        "score" if result.validation.startswith("holdout") else "CV mean",
        "± std",
        "fit s",
        "ms/row",
        "trials",
    ):
        table.add_column(header, no_wrap=True, justify="left" if header == "family" else "right")
    for rank, row in enumerate(result.leaderboard, start=1):
        table.add_row(
            str(rank),
            row.family,
            str(row.best_trial),
            f"{row.cv_mean:.4f}",
            f"{row.cv_std:.4f}",
            f"{row.fit_seconds:.3f}",
            f"{row.predict_latency_ms:.4f}",
            str(row.trials),
        )
    console.print(table)
    if result.dropped_columns:
        dropped = "; ".join(f"{c} ({why})" for c, why in result.dropped_columns.items())
        console.print(f"dropped columns: {dropped}", soft_wrap=True)
    console.print(
        f"winner [bold]{result.best_family}[/]: holdout {result.metric} = [bold]{result.holdout_score:.4f}[/] "
        f"on {result.holdout_size} rows; wall time {result.wall_seconds:.1f} s of {budget_s:g} s"
    )
    console.print(f"trials scored by {result.validation} of {result.sweep_rows} training rows", soft_wrap=True)


@app.command("train")
def train_command(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Catalog model to train (repeat for several; default: every model, see tracseq models)."),
    ] = None,
    budget_s: Annotated[float, typer.Option("--budget-s", help="Wall-clock budget of each family's sweep, seconds.")] = 60.0,
    families: Annotated[
        str | None, typer.Option("--families", help="Comma-separated model families (default: the model's own).")
    ] = None,
    max_trials: Annotated[int | None, typer.Option("--max-trials", help="Trials per model family.")] = None,
    cv_folds: Annotated[int, typer.Option("--cv-folds", help="Cross-validation folds.")] = 5,
    max_sweep_rows: Annotated[
        int, typer.Option(help="Training rows the trials see at most (a stratified sample); the final fit uses all.")
    ] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed of the sweeps and the final fit.")] = 0,
    workers: Annotated[int, typer.Option(help="Families swept at the same time, each in its own process.")] = 2,
    ensemble: Annotated[
        bool,
        typer.Option(help="Register the families' weighted ensemble instead of the winner when it scores better on the holdout."),
    ] = True,
    min_improvement: Annotated[
        float | None, typer.Option(help="Gate: holdout gain over the champion required (default: the model's policy).")
    ] = None,
    max_ece: Annotated[
        float | None, typer.Option(help="Gate: largest expected calibration error accepted (default: the model's policy).")
    ] = None,
    max_brier: Annotated[
        float | None, typer.Option(help="Gate: largest Brier score accepted (default: the model's policy).")
    ] = None,
) -> None:
    """Train catalog models through Dagster: sweep the families, register the winner, run the promotion gate."""
    import time

    from rich.markup import escape

    from tracseq_dagster.automl import ALL_FAMILIES
    from tracseq_dagster.instance import get_instance
    from tracseq_dagster.models import model_names
    from tracseq_dagster.train import StepOutcome, prepare_feature_store, train

    specs = [_model_spec(name) for name in (model or model_names())]
    requested = None if families is None else tuple(f.strip() for f in families.split(",") if f.strip())
    unknown = sorted(set(requested or ()) - set(ALL_FAMILIES))
    if unknown:
        raise typer.BadParameter(f"unknown families {', '.join(unknown)}; choose from {', '.join(ALL_FAMILIES)}")
    instance = get_instance()
    _require_mlflow()
    started = time.perf_counter()

    def report(step: StepOutcome, bars: _SweepBars | None = None) -> None:
        """One line per finished step (with ``bars``: that model's bars first move on)."""
        if bars is not None:
            bars.step_done(step.name, step.success)
        mark = "[green]✓[/]" if step.success else "[red]✗[/]"
        console.print(
            f"{mark} {escape(step.name)} ({time.perf_counter() - started:.0f} s, run {step.run_id[:8]})"
            + (f": {step.error}" if step.error else ""),
            soft_wrap=True,
        )

    sweep = {
        "time_budget_s": budget_s,
        "max_trials": max_trials,
        "cv_folds": cv_folds,
        "seed": seed,
        "max_sweep_rows": max_sweep_rows,
    }
    gate = {
        k: v for k, v in {"min_improvement": min_improvement, "max_ece": max_ece, "max_brier": max_brier}.items() if v is not None
    }
    report(prepare_feature_store())  # a failure is reported; the training sets then say where they came from
    failed = []
    for spec in specs:
        chosen = requested or spec.swept_families()
        with _SweepBars(spec.name, chosen, budget_s, max_trials) as bars:
            outcomes = train(
                spec.name,
                chosen,
                sweep_config=sweep,
                gate_config=gate,
                workers=workers,
                ensemble=ensemble,
                on_step=functools.partial(report, bars=bars),
            )
        _print_training_summary(instance, spec.name)
        if not outcomes or not outcomes[-1].success or not outcomes[-1].name.startswith("register_and_promote"):
            failed.append(spec.name)
    if failed:
        err_console.print(f"[red]not trained:[/] {', '.join(failed)}")
        raise typer.Exit(code=1)


class _SweepBars:
    """One bar per family of a model's sweep: trials done and the best CV score so far, live.

    The sweeps run in other processes; a thread reads their trials from the Optuna storage
    (:class:`~tracseq_dagster.automl.progress.SweepProgressReader`) twice a second. A bar's
    length is ``--max-trials`` when given; otherwise it pulses until the family's run ends (a
    family may wait for a worker, so its budget is no clock). Reading the storage can fail
    (not created yet, locked): the bars then wait for the next read; training never notices.
    """

    POLL_S = 0.5

    def __init__(self, model: str, families: tuple[str, ...], budget_s: float, max_trials: int | None) -> None:
        import threading
        from datetime import datetime

        from tracseq_dagster import settings
        from tracseq_dagster.automl.progress import SweepProgressReader

        self.model, self.families, self.budget_s, self.max_trials = model, families, budget_s, max_trials
        self.progress = progress_bars(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[trials]} trials, best {task.fields[best]}"),
            TimeElapsedColumn(),
        )
        self.tasks: dict[str, Any] = {}
        self.done: set[str] = set()
        # The storage the sweeps write to (build_definitions' default, TRACSEQ_OPTUNA_STORAGE or the data dir).
        self.reader = SweepProgressReader(settings.optuna_storage_url(), model, families, datetime.now())
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> _SweepBars:
        self.progress.__enter__()
        if not self.progress.disable:
            from tracseq_dagster.automl import prepare_study_storage

            # Optuna's tables before the sweeps start, as they would (same lock): opening a storage
            # that does not exist yet stamps its schema version, which raced the first sweep's.
            prepare_study_storage(self.reader.storage_url)
            total = float(self.max_trials) if self.max_trials else None
            for family in self.families:
                self.tasks[family] = self.progress.add_task(f"{self.model}/{family}", total=total, trials=0, best="–")
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def step_done(self, step: str, success: bool) -> None:
        """A family's run ended (``automl_trials[model|family]``): its bar is full, its last counts read."""
        for family, task in self.tasks.items():
            if step.endswith(f"|{family}]"):
                self._update()
                self.done.add(family)
                trials = self.progress.tasks[task].fields["trials"]
                self.progress.update(
                    task,
                    total=self.progress.tasks[task].total or max(trials, 1),
                    completed=self.progress.tasks[task].total or max(trials, 1),
                    description=f"{self.model}/{family} {'✓' if success else '✗'}",
                )

    def _poll(self) -> None:
        while not self.stop.wait(self.POLL_S):
            self._update()

    def _update(self) -> None:
        try:
            read = self.reader.read()
        except Exception:  # noqa: BLE001 - the storage is not there yet or busy: try again on the next tick
            return
        for family, task in self.tasks.items():
            state = read[family]
            if family in self.done:
                continue
            self.progress.update(
                task,
                completed=state.trials,
                trials=state.trials,
                best="–" if state.best is None else f"{state.best:.4f}",
            )


def _model_spec(name: str):  # type: ignore[no-untyped-def]
    """The catalog's declaration of ``name``, or a usage error that lists the catalog."""
    from tracseq_dagster.models import UnknownModelError, get_model

    try:
        return get_model(name)
    except UnknownModelError as error:
        raise typer.BadParameter(str(error), param_hint="--model") from None


def _print_training_summary(instance, model: str) -> None:  # type: ignore[no-untyped-def]
    """The leaderboard and the gate's decision of ``model``, from the latest materializations."""
    import dagster as dg

    for key in ("automl_leaderboard", "promotion_gate"):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[model]), limit=1
        ).records
        if not records or records[0].asset_materialization is None:
            continue
        metadata = records[0].asset_materialization.metadata
        if key == "automl_leaderboard":
            console.print(metadata["leaderboard"].value)
        else:
            console.print(
                f"{model} promotion gate: [bold]{metadata['decision'].value}[/] (challenger v{metadata['challenger_version'].value})"
            )
            console.print(metadata["reasons"].value)


@app.command("models")
def models_command() -> None:
    """The catalog of models: what each predicts, its champion and the champion's holdout metrics."""
    from tracseq_dagster.models import catalog
    from tracseq_dagster.registry import CHALLENGER, CHAMPION

    _require_mlflow()
    table = Table(Column("model", no_wrap=True), "task", "champion", "holdout", "trained on", "challenger", title="model catalog")
    mlflow_tracking = _mlflow_resource()  # one code location for every model's registry
    for spec in catalog().values():
        registry = _registry(spec.name, mlflow_tracking)
        champion, challenger = registry.version(CHAMPION), registry.version(CHALLENGER)
        tags = champion.tags if champion else {}
        score = f"{tags.get('metric', '')} {float(tags['holdout_score']):.4f}" if "holdout_score" in tags else ""
        table.add_row(
            spec.name, spec.task,
            f"v{champion.version} ({tags.get('family', '?')})" if champion else "none",
            score, f"{tags['training_rows']} rows" if "training_rows" in tags else "",
            f"v{challenger.version}" if challenger else "none",
        )  # fmt: skip
    console.print(table)
    for spec in catalog().values():
        console.print(
            f"[bold]{spec.name}[/] ({len(spec.features)} features, predicted at {spec.predicted_at}): {spec.description}",
            soft_wrap=True,
        )


model_app = typer.Typer(help="A catalog model in the MLflow registry: history, rollback.", no_args_is_help=True)
app.add_typer(model_app, name="model")

from tracseq_dagster.control.cli import audit_command, management_app, tokens_app  # noqa: E402 - the control plane's commands
from tracseq_dagster.operations.report_cli import report_command  # noqa: E402 - the lab operations' commands
from tracseq_dagster.operations.run_cli import operations_command  # noqa: E402
from tracseq_dagster.operations.storage_cli import storage_app  # noqa: E402

app.add_typer(tokens_app, name="tokens")
app.add_typer(management_app, name="management")
app.command("audit")(audit_command)
app.command("report")(report_command)
app.command("operations")(operations_command)
app.add_typer(storage_app, name="storage")

ModelOption = Annotated[str, typer.Option("--model", help="Catalog model (see tracseq models).")]


def _registry(model: str, resource=None):  # type: ignore[no-untyped-def]
    """The registry of ``model`` in the code location's MLflow ($MLFLOW_TRACKING_URI or the embedded store)."""
    return (resource or _mlflow_resource()).registry(_model_spec(model).name)


def _mlflow_resource():  # type: ignore[no-untyped-def]
    import os

    # A command that only reads or moves an alias need not wait minutes for MLflow's retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    _require_mlflow()
    from tracseq_dagster.definitions import build_definitions

    return _resource(build_definitions(), "mlflow_tracking")


def _resource(defs: dg.Definitions, name: str) -> Any:
    """One resource of the code location (Dagster types ``Definitions.resources`` Optional; ours has them)."""
    assert defs.resources is not None, "the code location's Definitions carry their resources"
    return defs.resources[name]


def _require_mlflow() -> None:
    """Fail in seconds, with one line, when the MLflow tracking server cannot be reached."""
    from tracseq_dagster import settings

    settings.require_reachable(
        "MLFLOW_TRACKING_URI",
        settings.mlflow_tracking_uri(),
        what="the MLflow tracking server",
        fix="start it (docker compose up -d mlflow) or point MLFLOW_TRACKING_URI at a running server, or unset it for the embedded store",
    )


@model_app.command("history")
def model_history_command(model: ModelOption) -> None:
    """List what was champion when: every promotion and rollback, oldest first."""
    from tracseq_dagster.registry import CHALLENGER, CHAMPION, RegistryError

    registry = _registry(model)
    try:
        events = registry.history()
    except RegistryError as error:
        err_console.print(f"[red]error:[/] {error}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    table = Table(
        "#", "when (UTC)", "action", "champion", "replaced", "Dagster run", "reason", title=f"{registry.name}: champion history"
    )
    for e in events:
        table.add_row(
            str(e.sequence),
            e.at[:19],
            e.action,
            f"v{e.version}",
            f"v{e.previous}" if e.previous else "",
            (e.dagster_run_id or "")[:8],
            e.reason,
        )
    console.print(table)
    for alias in (CHAMPION, CHALLENGER):
        version = registry.version(alias)
        console.print(f"{alias}: " + (f"v{version.version}" if version else "none"))


@model_app.command("rollback")
def model_rollback_command(
    model: ModelOption,
    reason: Annotated[str, typer.Option(help="Why, recorded in the history.")] = "manual rollback",
) -> None:
    """Move the champion alias of a model back to its previous champion."""
    from tracseq_dagster.control.audit import record_or_warn
    from tracseq_dagster.control.cli import cli_actor
    from tracseq_dagster.registry import RegistryError

    try:
        event = _registry(model).rollback(reason)
    except RegistryError as error:
        record_or_warn(
            actor=cli_actor(), role="cli", action="rollback", model=model, outcome="refused", reason=f"{reason}: {error}"
        )
        err_console.print(f"[red]error:[/] {error}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    record_or_warn(actor=cli_actor(), role="cli", action="rollback", model=model, version=event.version, outcome="ok",
                   reason=reason, detail={"previous": event.previous, "sequence": event.sequence})  # fmt: skip
    console.print(f"{model}: champion is now v{event.version} (was v{event.previous})")


bento_app = typer.Typer(help="The prediction service of every catalog model (BentoML): build, serve.", no_args_is_help=True)
app.add_typer(bento_app, name="bento")


@bento_app.command("build")
def bento_build_command() -> None:
    """Package every catalog model's champion (and challenger) as one Bento, through Dagster."""
    from tracseq_dagster.instance import get_instance
    from tracseq_dagster.train import package_bento

    instance = get_instance()
    _require_mlflow()
    with _BentoBar():
        outcome = package_bento()
    if not outcome.success:
        err_console.print(f"[red]error:[/] {outcome.error}", soft_wrap=True)
        raise typer.Exit(code=1)
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey("prediction_bento"))
    metadata = event.asset_materialization.metadata  # type: ignore[union-attr]
    console.print(f"built [bold]{metadata['bento'].value}[/] serving {metadata['models_served'].value} "
                  f"(sample_quality champion v{metadata['champion_version'].value}, "
                  f"challenger {metadata['challenger_version'].value}); serve it with: tracseq bento serve")  # fmt: skip
    for name, why in (metadata["skipped"].value or {}).items():  # type: ignore[union-attr]
        console.print(f"  not served: {name} ({why})")


class _BentoBar:
    """The Bento build's stages as a bar: each catalog model exported, then the build itself.

    The build is one Dagster run in this process; its progress is read from what it writes:
    a model's folder appears in the run's bundle (``<lake>/serving/<run id>/models/<name>``)
    when that model is exported. A thread looks twice a second. Stderr, terminals only.
    """

    POLL_S = 0.5

    def __init__(self) -> None:
        import threading
        import time

        from tracseq_dagster import settings
        from tracseq_dagster.models import catalog
        from tracseq_dagster.serving.catalog_bundle import CATALOG_FILE, CATALOG_FOLDER

        self.catalog_file = CATALOG_FILE
        self.serving = Path(settings.lake_dir()) / "serving"
        self.models_folder, self.models = CATALOG_FOLDER, len(catalog())
        self.started = time.time()
        self.progress = progress_bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> _BentoBar:
        self.progress.__enter__()
        if not self.progress.disable:
            self.task = self.progress.add_task("exporting the catalog's champions", total=self.models + 1)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
            self.progress.update(self.task, completed=self.models + 1, description="Bento built" if exc[0] is None else "stopped")
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def _poll(self) -> None:
        while not self.stop.wait(self.POLL_S):
            try:
                # A second of slack: file times come from the kernel's coarse clock, which lags time.time().
                bundles = [d / self.models_folder for d in self.serving.iterdir() if d.stat().st_mtime >= self.started - 1.0]
                exported = max((sum(1 for _ in d.glob("*/")) for d in bundles), default=0)
                written = any((d / self.catalog_file).exists() for d in bundles)  # written after the last model
            except OSError:  # the lake's serving folder does not exist yet
                continue
            if written:
                self.progress.update(self.task, completed=self.models, description="building the Bento")
            else:
                self.progress.update(
                    self.task, completed=exported, description=f"exporting the catalog's champions ({exported} done)"
                )


@bento_app.command("serve")
def bento_serve_command(
    # 3003: make ui (dagster dev) has 3000, and the Compose stack publishes 3001 (gateway) and 3002 (/ask).
    port: Annotated[str, typer.Option(help="Port to listen on (1-65535).")] = "3003",
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    tag: Annotated[str | None, typer.Option(help="Bento to serve (default: the latest sample_quality build).")] = None,
) -> None:
    """Serve the latest prediction Bento (bentoml serve) until interrupted."""
    import os
    import shutil
    import sys

    from tracseq_dagster import settings

    port = str(settings.port_number("--port", port))
    settings.check_service_settings()  # the service reads them in its workers: fail here, in one line
    from tracseq_dagster.serving.bento_build import BENTO_NAME, bentoml

    store = os.environ.get("BENTOML_HOME", "")
    if tag is None:
        builds = sorted(bentoml.bentos.list(BENTO_NAME), key=lambda b: b.info.creation_time)
        if not builds:
            raise ConfigurationError(f"no prediction Bento in the BentoML store {store}: run tracseq bento build")
        tag = str(builds[-1].tag)
    elif not os.path.exists(tag):  # a tag in the store (bentoml serve also takes a build folder)
        try:
            tag = str(bentoml.bentos.get(tag).tag)
        except (bentoml.exceptions.NotFound, ValueError) as error:
            reason = "is not a valid Bento tag" if isinstance(error, ValueError) else "does not exist"
            raise ConfigurationError(
                f"Bento {tag} {reason} in the BentoML store {store} (BENTOML_HOME): "
                f"list the builds with `bentoml list {BENTO_NAME}`, or build one with `tracseq bento build`"
            ) from None
    bentoml_cli = shutil.which("bentoml") or os.path.join(os.path.dirname(sys.executable), "bentoml")
    os.execv(bentoml_cli, [bentoml_cli, "serve", tag, "--host", host, "--port", str(port)])


monitor_app = typer.Typer(help="Monitoring of every catalog model over its rows of the prediction log.", no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("drift")
def monitor_drift_command(
    model: Annotated[
        str | None, typer.Option(help="Catalog model to judge (default: every model with logged predictions).")
    ] = None,
    window_hours: Annotated[float, typer.Option(help="Judge the predictions of the last this many hours.")] = 24 * 7,
    log: Annotated[
        str | None, typer.Option(help="Prediction log (default: $TRACSEQ_PREDICTION_LOG or data/prediction_log).")
    ] = None,
    lake: Annotated[Path | None, typer.Option(help="Lake folder (default: $TRACSEQ_LAKE_DIR or data/lake).")] = None,
    psi: Annotated[float | None, typer.Option(help="PSI at which a feature drifted (default 0.2).")] = None,
    ks_statistic: Annotated[
        float | None, typer.Option(help="KS statistic at which a feature drifted (default 0.1), with p below --ks-alpha.")
    ] = None,
    ks_alpha: Annotated[
        float | None, typer.Option(help="KS p-value below which a large statistic counts (default 0.01).")
    ] = None,
) -> None:
    """PSI and KS per feature of each model's recent predictions against its training rows; exit 1 on drift of any."""
    from dataclasses import replace

    import pandas as pd

    from tracseq_dagster import settings
    from tracseq_dagster.lake import Lake
    from tracseq_dagster.monitoring.drift import DriftThresholds, drift_against_training
    from tracseq_dagster.monitoring.watched import no_predictions_message, predictions_per_model
    from tracseq_dagster.serving.prediction_log import last_hours, open_prediction_log

    given = {"psi": psi, "ks_statistic": ks_statistic, "ks_alpha": ks_alpha}  # the defaults live in DriftThresholds
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    thresholds = replace(DriftThresholds(), **overrides)
    since, until = last_hours(window_hours)
    prediction_log = open_prediction_log(log or settings.prediction_log_url())
    counts = predictions_per_model(prediction_log, since, until)
    models = [_model_spec(model).name] if model else [name for name, rows in counts.items() if rows]
    if not models:
        console.print(
            f"no predictions of any catalog model in {log or settings.prediction_log_url()} since {since:%Y-%m-%d %H:%M} UTC"
        )
        return
    drifted = []
    for name in models:
        current = prediction_log.read(since, until, model=name)
        if not len(current):
            console.print(no_predictions_message(name, since))
            continue
        try:
            report = drift_against_training(current, Lake(lake or settings.lake_dir()), _model_spec(name), thresholds)
        except FileNotFoundError as error:
            err_console.print(f"[red]error:[/] {name}: {error}", soft_wrap=True)
            raise typer.Exit(code=2) from None
        table = Table("feature", "PSI", "KS D", "KS p", "missing now", "drifted", "reason",
                      title=f"{name}: {len(current):,} predictions since {since:%Y-%m-%d %H:%M} UTC "
                            f"against {report.reference_rows:,} training rows")  # fmt: skip
        for row in report.table().itertuples():
            ks = (
                ("", "")
                if row.ks_statistic is None or pd.isna(row.ks_statistic)
                else (f"{row.ks_statistic:.3f}", f"{row.ks_pvalue:.2g}")
            )
            table.add_row(
                row.feature, f"{row.psi:.3f}", *ks, f"{row.current_missing:.1%}", "[red]yes[/]" if row.drifted else "", row.reason
            )
        console.print(table)
        if report.unlogged:
            console.print(f"{name}: not in the prediction log, not measured: {', '.join(report.unlogged)}", soft_wrap=True)
        console.print(f"[bold]{report.verdict}[/]: {report.summary()}", soft_wrap=True)
        if report.verdict == "drift":
            drifted.append(name)
    if drifted:
        raise typer.Exit(code=1)


documents_app = typer.Typer(help="Lab documents: ingest into LanceDB, example documents.", no_args_is_help=True)
app.add_typer(documents_app, name="documents")


@documents_app.command("ingest")
def documents_ingest_command(
    folder: Annotated[
        str, typer.Argument(help="Documents folder: a path or fsspec URL (default: $TRACSEQ_DOCUMENTS_URL or data/documents).")
    ] = "",
    lake: Annotated[Path | None, typer.Option(help="Lake folder (default: $TRACSEQ_LAKE_DIR or data/lake).")] = None,
    lancedb: Annotated[str | None, typer.Option(help="LanceDB folder (default: $TRACSEQ_LANCEDB_DIR or data/lancedb).")] = None,
    force: Annotated[bool, typer.Option(help="Re-parse documents whose bytes were already ingested.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every Dagster event on the console.")] = False,
) -> None:
    """Parse, chunk and index every document in FOLDER through Dagster, without a UI."""
    from tracseq_dagster import settings
    from tracseq_dagster.definitions import build_definitions
    from tracseq_dagster.documents.ingest import index_documents, ingest_documents
    from tracseq_dagster.instance import get_instance

    url = folder or settings.documents_url()
    if lancedb:
        lancedb = settings.lancedb_folder("--lancedb", lancedb)
    instance = get_instance()
    defs = build_definitions(lake_dir=str(lake) if lake else None, documents_url=url, lancedb_dir=lancedb)
    log_level = "DEBUG" if verbose else "CRITICAL"
    with progress_bars(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[pages]} pages"),
        TimeElapsedColumn(),
    ) as progress:
        from tracseq_dagster.documents.parsing import DOCUMENT_SUFFIXES
        from tracseq_dagster.landing import list_landing_files

        total = len(list_landing_files(url, DOCUMENT_SUFFIXES)) if not progress.disable else None
        task = progress.add_task("parsing documents", total=total, pages=0)

        def parsed(outcome) -> None:  # type: ignore[no-untyped-def]
            progress.update(task, advance=1, pages=progress.tasks[task].fields["pages"] + (outcome.pages or 0))

        outcomes = ingest_documents(url, defs=defs, instance=instance, force=force, log_level=log_level, on_file=parsed)
    table = Table("file", "partition", "status", "pages", "chunks")
    for o in outcomes:
        colour = {"ingested": "green", "failed": "red", "unchanged": "dim"}[o.status]
        table.add_row(Path(o.path).name, o.document_id, f"[{colour}]{o.status}[/]", _count(o.pages), _count(o.chunks))
    console.print(table)
    for o in outcomes:
        if o.error:
            console.print(f"[red]✗[/] {o.error}", soft_wrap=True)
    with console.status("embedding and indexing"):
        result, meta = index_documents(defs=defs, instance=instance, log_level=log_level)
    if result.success:
        console.print(
            f"document_index: [green]{meta.get('documents', 0)} documents, {meta.get('dagster/row_count', 0)} chunks[/] "
            f"({meta.get('documents_written', 0)} written, {meta.get('documents_unchanged', 0)} unchanged, "
            f"{meta.get('documents_removed', 0)} removed) in {_resource(defs, 'lancedb').uri}"
        )
    else:
        from tracseq_dagster.ingest import failure_message

        console.print(f"[red]indexing failed:[/] {failure_message(result)}", soft_wrap=True)
    if not result.success or any(o.status == "failed" for o in outcomes):
        raise typer.Exit(code=1)


@documents_app.command("generate-examples")
def documents_examples_command(
    out: Annotated[Path, typer.Option(help="Folder to write the example documents to.")] = Path("data/documents"),
) -> None:
    """Write example lab documents (SOP with a scanned page, QC report, submission forms, DOCX/HTML/Markdown/text)."""
    from tracseq_dagster.documents.examples import generate_examples

    for path in generate_examples(out):
        console.print(f"wrote {path}")


@app.command("ask")
def ask_command(
    question: Annotated[str, typer.Argument(help="A question about the lab's documents.")],
    top_k: Annotated[int, typer.Option("--top-k", help="Passages to retrieve.")] = 5,
    document_type: Annotated[
        str | None, typer.Option("--type", help="Only this document type: sop, report, submission_form, other.")
    ] = None,
    file: Annotated[str | None, typer.Option("--file", help="Only this file name.")] = None,
    generate: Annotated[bool, typer.Option(help="Generate an answer with Ollama (--no-generate: passages only).")] = True,
    model: Annotated[str | None, typer.Option(help="Ollama model (default: $TRACSEQ_OLLAMA_MODEL or llama3.2:3b).")] = None,
    lancedb: Annotated[str | None, typer.Option(help="LanceDB folder (default: $TRACSEQ_LANCEDB_DIR or data/lancedb).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Answer from the indexed documents with file and page citations (streamed from Ollama).

    Without Ollama the best passages are shown with one line saying why and how to fix it.
    """
    import json

    from rich.markup import escape

    from tracseq_dagster import settings
    from tracseq_dagster.documents.llm import OllamaUnavailable
    from tracseq_dagster.documents.qa import DocumentQA
    from tracseq_dagster.documents.retrieval import Filters

    location = settings.lancedb_folder("--lancedb", lancedb) if lancedb else settings.lancedb_dir()
    try:
        qa = DocumentQA.open(
            location,
            embedder=settings.embedder(),
            ollama_host=settings.ollama_host(),
            model=model or settings.ollama_model(),
            timeout_s=settings.ollama_timeout_s(),
            generate=generate,
        )
        if qa.index.count() == 0:
            err_console.print("No documents are indexed yet. Fix: `tracseq documents ingest <folder>`.")
            raise typer.Exit(code=2)
        streamed: list[str] = []

        def show(piece: str) -> None:
            streamed.append(piece)
            if not as_json:
                console.out(piece, end="", highlight=False)

        answer = qa.ask(question, top_k=top_k, filters=Filters(document_type, file), on_token=show)
    except OllamaUnavailable as error:  # only an Ollama embedder reaches here; generation never raises
        err_console.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), indent=2))
        return
    if streamed:
        console.print()
    if answer.mode == "generated":
        console.print(f"\n[bold]Answer[/] ({answer.model}): {escape(answer.text)}", soft_wrap=True)
    elif answer.mode == "not_found":
        console.print(f"[yellow]{answer.text}[/]")
    else:
        console.print(f"[yellow]{escape(answer.notice or '')}[/]", soft_wrap=True)
    if answer.notice and answer.mode == "generated":
        console.print(f"[yellow]{escape(answer.notice)}[/]")
    if answer.mode != "not_found":
        console.print("[bold]Sources[/]")
        for number, passage in enumerate(answer.passages, 1):
            console.print(
                f"[{number}] [cyan]{escape(passage.citation)}[/] ({passage.similarity:.2f}) {escape(passage.text[:200].replace(chr(10), ' '))}",
                soft_wrap=True,
            )


def _cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


if __name__ == "__main__":
    app()
