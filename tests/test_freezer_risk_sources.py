"""Where a freezer's excursion risk comes from, for placement and alerts: the freezer_excursion_risk
champion when there is one (named with its version in the reasons), the history rule otherwise
(said so); a challenger never places samples; a champion that cannot score leaves history to answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from catalog_support import fit, pack

from tracseq_dagster.generator import generate_samples
from tracseq_dagster.models import get_model
from tracseq_dagster.models.freezer_excursion_risk import FEATURES, QUIET, labelled_rows_from_samples
from tracseq_dagster.operations.alert_sources import freezer_risk_alerts
from tracseq_dagster.operations.freezer_history import freezer_days, freezer_days_as_of
from tracseq_dagster.operations.freezer_state import freezer_state
from tracseq_dagster.operations.placement_risk import HISTORY_SOURCE, Champion, excursion_risk, freezer_risk, history_risk
from tracseq_dagster.operations.storage_placement import IncomingSample, recommend
from tracseq_dagster.operations.storage_utilisation import state_tables
from tracseq_dagster.serving.catalog_predictor import ServedCatalog

NAME = "freezer_excursion_risk"


@pytest.fixture(scope="module")
def lab() -> pd.DataFrame:
    return generate_samples(3000, seed=3, start=pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=400))


@pytest.fixture(scope="module")
def champion(lab: pd.DataFrame) -> Champion:
    model, _ = fit(get_model(NAME), labelled_rows_from_samples(lab), "logistic")
    return Champion(model, "3")


def expected_risk(model: object, history: pd.DataFrame, freezers: list[str], as_of: pd.Timestamp) -> np.ndarray:
    rows = freezer_days_as_of(history, pd.Series(freezers), pd.Series([as_of] * len(freezers)))
    classes = [str(c) for c in model.classes_]  # type: ignore[attr-defined]
    return 1.0 - model.predict_proba(rows[list(FEATURES)].astype(float))[:, classes.index(QUIET)]  # type: ignore[attr-defined]


def test_the_champion_predicts_every_freezers_risk_and_the_reasons_name_it(lab: pd.DataFrame, champion: Champion) -> None:
    state = freezer_state(lab)
    freezers = state.freezers["freezer_id"].astype(str).tolist()
    history = freezer_days(lab, until=state.as_of)
    report = freezer_risk(history, freezers, state.as_of, champion)
    assert report.source == "model" and report.notes == [] and sorted(report.risk) == sorted(freezers)
    assert {r.source for r in report.risk.values()} == {"predicted by freezer_excursion_risk v3"}
    np.testing.assert_allclose([report.risk[f].probability for f in freezers],
                               expected_risk(champion.model, history, freezers, state.as_of))  # fmt: skip
    # It differs from the history rule: the model's answer, not the rule relabelled.
    rule = history_risk(history, freezers, state.as_of)
    assert max(abs(report.risk[f].probability - rule[f].probability) for f in rule) > 0.01

    [placed] = recommend([IncomingSample("RNA", "PRJ-0001")], state, report.risk, top=1)
    assert placed.chosen is not None
    assert any("(predicted by freezer_excursion_risk v3)" in reason for reason in placed.chosen.reasons), placed.chosen.reasons

    freezers_table, _ = state_tables(state, lab, pd.Series({f: r.probability for f, r in report.risk.items()}), history,
                                     pd.Series({f: r.source for f, r in report.risk.items()}))  # fmt: skip
    [alert, *_] = freezer_risk_alerts(freezers_table, bound=0.0)
    assert "The excursion risk predicted by freezer_excursion_risk v3 of a temperature excursion" in alert.message
    assert alert.details["risk_source"] == "predicted by freezer_excursion_risk v3"


def test_without_a_champion_the_history_rule_answers_and_says_so(lab: pd.DataFrame) -> None:
    state = freezer_state(lab)
    freezers = state.freezers["freezer_id"].astype(str).tolist()
    history = freezer_days(lab, until=state.as_of)
    report = freezer_risk(history, freezers, state.as_of, None)
    assert report.source == "history" and report.notes == [
        "no freezer_excursion_risk champion registered: risk from history, no model"
    ]
    assert {r.source for r in report.risk.values()} == {HISTORY_SOURCE}
    rule = history_risk(history, freezers, state.as_of)
    assert {f: r.probability for f, r in report.risk.items()} == {f: r.probability for f, r in rule.items()}

    [placed] = recommend([IncomingSample("RNA", "PRJ-0001")], state, report.risk, top=1)
    assert any(f"({HISTORY_SOURCE})" in reason for reason in placed.chosen.reasons)  # type: ignore[union-attr]

    table, _ = state_tables(state, lab, pd.Series({f: r.probability for f, r in report.risk.items()}), history,
                            pd.Series({f: r.source for f, r in report.risk.items()}))  # fmt: skip
    assert (table["excursion_risk_source"] == HISTORY_SOURCE).all()
    alerts = freezer_risk_alerts(table, bound=0.0)
    assert len(alerts) == len(freezers)
    assert all("No freezer_excursion_risk champion is registered; from its recorded excursion rate" in a.message for a in alerts)


def test_a_champion_that_cannot_score_leaves_history_to_answer(lab: pd.DataFrame) -> None:
    state = freezer_state(lab)
    freezers = state.freezers["freezer_id"].astype(str).tolist()
    report = freezer_risk(freezer_days(lab, until=state.as_of), freezers, state.as_of, Champion(object(), "4"))
    assert report.source == "history" and {r.source for r in report.risk.values()} == {HISTORY_SOURCE}
    assert len(report.notes) == 1 and report.notes[0].startswith("freezer_excursion_risk v4 could not score (AttributeError")


def test_the_served_champion_not_the_challenger_places_samples(lab: pd.DataFrame, tmp_path: Path) -> None:
    """The Bento packs champion v1 (logistic) and challenger v2 (lightgbm, half the traffic): every
    freezer's risk is the champion's, named v1, whatever the A/B split would give its sample."""
    pack(tmp_path, NAME, labelled_rows_from_samples(lab), lab, None, ("logistic", "lightgbm"))
    served = ServedCatalog(tmp_path).models[NAME]
    assert set(served.variants) == {"champion", "challenger"}
    state = freezer_state(lab)
    freezers = state.freezers["freezer_id"].astype(str).tolist()
    report = excursion_risk(lab, freezers, state.as_of, predictor=served)
    assert report.source == "model" and report.notes == []
    assert {r.source for r in report.risk.values()} == {"predicted by freezer_excursion_risk v1"}
    champion_model = served.variants["champion"]
    # The same freezer features as the lake's champion path, so the same risk as scoring them directly.
    history = freezer_days(lab)
    direct = 1.0 - champion_model.scorer.score(
        freezer_days_as_of(history, pd.Series(freezers), pd.Series([state.as_of] * len(freezers)))[list(FEATURES)]
        .astype(float).reset_index(drop=True)
    ).values  # fmt: skip
    np.testing.assert_allclose([report.risk[f].probability for f in freezers], direct, atol=1e-6)
