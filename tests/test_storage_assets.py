"""Storage outputs: freezer and box state and utilisation on hand-made labs (counts, fill dates,
the demand forecast tie-in, a broken location, an empty lab, the champion's risk), and both assets
materialized on an embedded Dagster instance with a champion registered in a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.test_features import frame
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.models.freezer_excursion_risk import FEATURES, LABEL, QUIET, labelled_rows_from_samples
from tracseq_dagster.operations.freezer_history import freezer_days, freezer_days_as_of
from tracseq_dagster.operations.freezer_state import freezer_state
from tracseq_dagster.operations.storage_utilisation import (
    BOX_COLUMNS,
    FREEZER_COLUMNS,
    UTILISATION_COLUMNS,
    champion_risk,
    state_tables,
    utilisation,
    utilisation_figure,
)

AS_OF = pd.Timestamp("2025-06-30T12:00:00Z")


def at(days_before: float) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days_before)


def lab() -> pd.DataFrame:
    """FRZ-01: box R1/B1 holds 3 samples of the last 30 days, R2/B1 one old sample, and one sample of R1/B1
    was taken out for extraction 2 days ago; FRZ-02: one old sample."""
    rows = [{"received_ts": at(d), "storage_location": loc}
            for d, loc in ((5, "FRZ-01/R1/B1/A1"), (10, "FRZ-01/R1/B1/A2"), (20, "FRZ-01/R1/B1/A3"),
                           (100, "FRZ-01/R2/B1/A1"), (90, "FRZ-02/R1/B1/A1"))]  # fmt: skip
    rows.append({"received_ts": at(60), "extraction_ts": at(2), "storage_location": "FRZ-01/R1/B1/A4"})
    return frame(*rows)


def test_state_tables_follow_the_output_contract() -> None:
    samples = lab()
    state = freezer_state(samples, as_of=AS_OF)
    freezers, boxes = state_tables(state, samples)
    assert list(freezers.columns) == FREEZER_COLUMNS and list(boxes.columns) == BOX_COLUMNS
    one = freezers.set_index("freezer_id").loc["FRZ-01"]
    assert (one["positions"], one["occupied"], one["free"], one["boxes"]) == (200, 4, 196, 2)
    assert np.isnan(one["excursion_risk_30d"]) and (freezers["as_of"] == AS_OF).all()
    assert boxes.set_index(["freezer_id", "rack", "box"]).loc[("FRZ-01", 1, 1), "occupied"] == 3


def test_utilisation_fills_at_the_current_intake_and_not_without_intake() -> None:
    samples = lab()
    table = utilisation(freezer_state(samples, as_of=AS_OF), samples)
    assert list(table.columns) == UTILISATION_COLUMNS
    whole = table[table["level"] == "freezer"].set_index("freezer_id")
    assert whole.loc["FRZ-01", "intake_per_day"] == pytest.approx(3 / 30)
    assert whole.loc["FRZ-01", "outflow_per_day"] == pytest.approx(1 / 30)
    assert whole.loc["FRZ-01", "occupancy"] == pytest.approx(4 / 200)
    # 196 free positions at a net 2 samples per 30 days.
    assert whole.loc["FRZ-01", "fills_on"] == (AS_OF.floor("D") + pd.Timedelta(days=int(np.ceil(196 / (2 / 30))))).date()
    assert pd.isna(whole.loc["FRZ-02", "fills_on"]) and whole.loc["FRZ-02", "intake_per_day"] == 0
    racks = table[(table["level"] == "rack") & (table["freezer_id"] == "FRZ-01")].set_index("rack")
    assert racks.loc[1, "net_per_day"] == pytest.approx(2 / 30) and pd.isna(racks.loc[2, "fills_on"])
    assert (table["intake_source"] == "last 30 days").all()
    assert utilisation_figure(table).axes  # the plot draws


def test_the_demand_forecast_sets_the_intake_when_it_is_there() -> None:
    samples = lab()
    days = pd.date_range(AS_OF.floor("D"), periods=14, freq="D")
    forecast = pd.DataFrame({"sample_type": "DNA", "site": "all", "ds": days.date, "forecast": 2.0, "lo": 1.0, "hi": 3.0})
    table = utilisation(freezer_state(samples, as_of=AS_OF), samples, forecast)
    whole = table[table["level"] == "freezer"].set_index("freezer_id")
    # FRZ-01 took every DNA sample of the last 30 days: it gets the whole forecast of 2 a day.
    assert whole.loc["FRZ-01", "intake_per_day"] == pytest.approx(2.0)
    assert whole.loc["FRZ-01", "net_per_day"] == pytest.approx(2.0 - 1 / 30)
    assert (table["intake_source"] == "demand forecast").all()


def test_a_broken_location_is_left_out_and_an_empty_lab_gives_empty_tables() -> None:
    samples = lab()
    samples.loc[0, "storage_location"] = "freezer one"
    state = freezer_state(samples, as_of=AS_OF)
    freezers, _ = state_tables(state, samples)
    assert len(state.unparsable) == 1 and freezers.set_index("freezer_id").loc["FRZ-01", "occupied"] == 3
    assert len(utilisation(state, samples)) == 5  # 2 freezers + 3 racks
    empty = frame()
    state = freezer_state(empty, as_of=AS_OF)
    freezers, boxes = state_tables(state, empty)
    assert freezers.empty and boxes.empty and utilisation(state, empty).empty


def fitted_risk_model(samples: pd.DataFrame) -> LogisticRegression:
    rows = labelled_rows_from_samples(samples)
    return LogisticRegression(C=0.1, max_iter=2000).fit(rows[list(FEATURES)].fillna(0.0), rows[LABEL])


class Filled:
    """A fitted model behind the imputation a pipeline would do (the catalog's families impute)."""

    def __init__(self, model: LogisticRegression) -> None:
        self.model, self.classes_ = model, model.classes_

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(features.fillna(0.0))


def test_the_champion_risk_is_one_minus_its_quiet_probability() -> None:
    samples = generate_samples(1500, seed=7)
    model = Filled(fitted_risk_model(samples))
    history = freezer_days(samples)
    as_of = pd.to_datetime(samples["received_ts"], utc=True).max()
    ids = ["FRZ-03", "FRZ-06"]
    risk = champion_risk(model, history, ids, as_of)
    features = freezer_days_as_of(history, pd.Series(ids), pd.Series([as_of] * 2))[list(FEATURES)]
    expected = 1 - model.predict_proba(features)[:, list(model.classes_).index(QUIET)]
    np.testing.assert_allclose(risk.to_numpy(), expected)
    assert ((risk > 0) & (risk < 1)).all()


@pytest.mark.slow
def test_both_assets_materialize_with_a_registered_champion(tmp_path: Path) -> None:
    import mlflow
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from assets.operations.storage import freezer_state as freezer_state_asset
    from assets.operations.storage import storage_utilisation
    from resources import LakeResource, MLflowResource
    from tracseq_dagster.lake import Lake
    from tracseq_dagster.operations import outputs
    from tracseq_dagster.tracking import fluent_api, open_client

    samples = generate_samples(1500, seed=7)
    samples.loc[samples.index[-1], "storage_location"] = "FRZ-01/shelf"  # not fatal
    lake = Lake(tmp_path / "lake")
    lake.write_record("b" * 16, "samples.csv", len(samples))
    lake.write_table(lake.validated_path("b" * 16), samples)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    resources = {"lake": LakeResource(root=str(lake.root)), "mlflow_tracking": MLflowResource(tracking_uri=uri)}
    instance = dg.DagsterInstance.ephemeral()

    first = dg.materialize([freezer_state_asset, storage_utilisation], instance=instance, resources=resources)
    assert first.success
    meta = first.asset_materializations_for_node("freezer_state")[0].metadata
    assert "no freezer_excursion_risk champion" in meta["excursion_risk"].value and meta["unparsable_locations"].value == 1
    # No champion: the history rule, said so per freezer (the alerts and the CLI read it).
    without = pd.read_parquet(lake.operations_path(outputs.FREEZER_STATE))
    assert without["excursion_risk_30d"].between(0, 1).all() and meta["excursion_risk_source"].value == "history"
    assert (without["excursion_risk_source"] == "risk from history, no model").all()
    util = first.asset_materializations_for_node("storage_utilisation")[0].metadata
    assert "data:image/png;base64," in util["plot"].value and util["freezers"].value == 13
    assert set(pd.read_parquet(lake.operations_path(outputs.STORAGE_UTILISATION)).columns) == set(UTILISATION_COLUMNS)

    rows = labelled_rows_from_samples(samples)
    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()).fit(rows[list(FEATURES)], rows[LABEL])
    client = open_client(uri)
    with fluent_api(client), mlflow.start_run():
        mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name="freezer_excursion_risk",
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        )  # as training logs it
    client.set_registered_model_alias("freezer_excursion_risk", "champion", "1")
    second = dg.materialize([freezer_state_asset], instance=instance, resources=resources)
    assert second.success
    meta = second.asset_materializations_for_node("freezer_state")[0].metadata
    assert meta["excursion_risk"].value == "predicted by freezer_excursion_risk v1 (the registered champion)"
    state = pd.read_parquet(lake.operations_path(outputs.FREEZER_STATE))
    assert state["excursion_risk_30d"].between(0, 1).all() and len(state) == 13
    assert (state["excursion_risk_source"] == "predicted by freezer_excursion_risk v1").all()
    assert not np.allclose(state["excursion_risk_30d"].to_numpy(), without["excursion_risk_30d"].to_numpy())
    assert len(pd.read_parquet(lake.operations_path(outputs.BOX_STATE))) == meta["boxes"].value
