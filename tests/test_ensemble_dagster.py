"""``tracseq train`` through Dagster builds the ensemble after the sweeps and records its choice on the
registered model's materialization (the CLI on an embedded instance, as ``make demo`` runs it)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from dagster_helpers import latest_materialization
from typer.testing import CliRunner

from tracseq_dagster.automl.out_of_fold import OutOfFold
from tracseq_dagster.cli import app
from tracseq_dagster.registry import ModelRegistry
from tracseq_dagster.tracking import open_client

pytestmark = pytest.mark.slow
FAMILIES = ("logistic", "lightgbm", "random_forest")


def test_tracseq_train_chooses_between_the_ensemble_and_the_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("TRACSEQ_DATA_DIR", str(data))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = CliRunner()
    generated = runner.invoke(app, ["generate-exports", "--rows", "3000", "--seed", "4", "--out", str(data / "landing")])
    assert generated.exit_code == 0 and runner.invoke(app, ["ingest", str(data / "landing")]).exit_code == 0
    arguments = ["train", "--model", "sample_quality", "--budget-s", "10", "--families", ",".join(FAMILIES)]
    result = runner.invoke(app, [*arguments, "--max-trials", "3", "--cv-folds", "3", "--max-ece", "0.3"])
    assert result.exit_code == 0, result.output

    # Every sweep left its best trial's out-of-fold predictions beside its outcome, on the same rows.
    paths = sorted(data.rglob("*.oof.npz"))
    assert {p.name for p in paths} == {f"{f}.oof.npz" for f in FAMILIES}, f"{paths}\n{result.output}"
    parts = [OutOfFold.load(p) for p in paths]
    assert len({p.fingerprint for p in parts}) == 1 and all(len(p.index) == len(parts[0].index) for p in parts)
    assert all(p.predictions.shape == (len(p.index), 3) for p in parts)  # pass / borderline / fail probabilities

    metadata = latest_materialization(dg.DagsterInstance.get(), "registered_model").metadata
    chosen = metadata["ensemble"].value
    assert chosen in ("chosen", "not chosen"), chosen
    single, ensemble = metadata["single_holdout_score"].value, metadata["ensemble_holdout_score"].value
    reason = metadata["ensemble_reason"].value
    assert metadata["single_family"].value in FAMILIES and 0.5 < single <= 1.0
    weights = metadata["ensemble_weights"].value
    if weights:  # an ensemble was built and scored: the holdout decided
        assert abs(sum(weights.values()) - 1.0) < 1e-9 and set(weights) <= set(FAMILIES)
        assert ensemble is not None and (chosen == "chosen") == (ensemble > single), reason
    else:
        assert chosen == "not chosen" and "no out-of-fold gain" in reason
    family = metadata["family"].value
    assert family == ("ensemble" if chosen == "chosen" else metadata["single_family"].value)
    assert metadata["holdout_roc_auc_ovr"].value == pytest.approx(ensemble if chosen == "chosen" else single)

    client = open_client(f"sqlite:///{data / 'mlflow' / 'mlflow.db'}")
    version = ModelRegistry(client, "sample_quality").version("challenger")
    assert (
        version is not None
        and version.tags["family"] == family
        and version.tags["ensemble_chosen"] == str(chosen == "chosen").lower()
    )

    # `--no-ensemble` registers the winner without building the ensemble, and says so.
    result = runner.invoke(app, [*arguments, "--max-trials", "2", "--cv-folds", "3", "--max-ece", "0.3", "--no-ensemble"])
    assert result.exit_code == 0, result.output
    metadata = latest_materialization(dg.DagsterInstance.get(), "registered_model").metadata
    assert metadata["ensemble"].value == "off" and metadata["family"].value in FAMILIES
