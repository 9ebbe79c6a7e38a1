"""What a prediction means for the bench: a quality category, risk factors and recommendations.

Categories by the probability that the sample passes QC (thresholds documented in the README):

* ``high``: P(pass) >= 0.70: process as planned.
* ``medium``: 0.40 <= P(pass) < 0.70: check the flagged factors before spending sequencing.
* ``low``: P(pass) < 0.40: act on the recommendations first.

Risk factors are the features with the most negative contributions (see
:mod:`tracseq_dagster.serving.scoring`); each maps to an action a lab technician can take,
worded with the sample's own values (the freezer, the cycle count, the ratio).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracseq_dagster.features import FEATURE_NAMES, FEATURE_SPEC_BY_NAME
from tracseq_dagster.models.spec import distinct_actions

HIGH_THRESHOLD = 0.70
MEDIUM_THRESHOLD = 0.40
#: How many risk factors an answer lists.
TOP_RISK_FACTORS = 5


#: Probabilities and contributions are answered to this many decimals. The category is read
#: from the answered probability, so an answer never shows 0.7 beside "medium", and the
#: prediction log keeps the answered values.
ANSWER_DECIMALS = 6


def answered(values: np.ndarray) -> np.ndarray:
    """Values as an answer shows them (:data:`ANSWER_DECIMALS`)."""
    return np.round(values, ANSWER_DECIMALS)


def category(quality_probability: float) -> str:
    """high / medium / low by the documented thresholds."""
    if quality_probability >= HIGH_THRESHOLD:
        return "high"
    if quality_probability >= MEDIUM_THRESHOLD:
        return "medium"
    return "low"


def categories(quality_probability: np.ndarray) -> np.ndarray:
    """:func:`category` of every row, as codes into :data:`CATEGORIES`."""
    return np.where(quality_probability >= HIGH_THRESHOLD, 0, np.where(quality_probability >= MEDIUM_THRESHOLD, 1, 2))


#: The category names in the order of :func:`categories`' codes.
CATEGORIES: tuple[str, ...] = ("high", "medium", "low")


def top_risk_factors(contributions: np.ndarray, top: int = TOP_RISK_FACTORS) -> tuple[np.ndarray, np.ndarray]:
    """Every row's :func:`risk_factors` at once: (feature indices, contributions), worst first.

    Where a row has fewer than ``top`` negative contributions, the rest are index -1 and NaN.
    A contribution that is zero as answered (:data:`ANSWER_DECIMALS`) is no risk factor: a
    feature that moved nothing (off every tree path, at its reference value) is never listed,
    nor one shown as -0.0.
    """
    order = np.argsort(contributions, axis=1)[:, :top]
    values = answered(np.take_along_axis(contributions, order, axis=1))
    risky = values < 0
    return np.where(risky, order, -1), np.where(risky, values, np.nan)


@dataclass(frozen=True)
class RiskFactor:
    """One feature pushing away from pass: its value (in ``unit``) and its contribution.

    What each feature means is in ``GET /model`` (``features``), not repeated in every answer.
    """

    feature: str
    value: Any
    unit: str
    contribution: float

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "value": self.value, "unit": self.unit, "contribution": self.contribution}


def risk_factors(contributions: np.ndarray, features: Mapping[str, Any], top: int = TOP_RISK_FACTORS) -> list[RiskFactor]:
    """The features pushing hardest away from ``pass`` (negative contributions), worst first."""
    indices, values = top_risk_factors(np.asarray(contributions)[None, :], top)
    return named_risk_factors(indices[0], values[0], features)


def named_risk_factors(indices: np.ndarray, values: np.ndarray, features: Mapping[str, Any]) -> list[RiskFactor]:
    """One row of :func:`top_risk_factors` as RiskFactors with the row's feature values."""
    out = []
    for j, value in zip(indices.tolist(), values.tolist(), strict=True):
        if j < 0:
            break
        name = FEATURE_NAMES[j]
        out.append(RiskFactor(name, _plain(features.get(name)), FEATURE_SPEC_BY_NAME[name].unit, value))
    return out


def _plain(value: Any) -> Any:
    """A JSON-safe scalar: NaN and infinities (a product of huge inputs) become None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return value if isinstance(value, (int, float, str)) else str(value)


def _shown(value: Any) -> str:
    """A value as a technician reads it: whole numbers from 100 on, else 3 significant digits;
    missing as 'not recorded'."""
    value = _plain(value)
    if value is None:
        return "not recorded"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def _freezer(record: Mapping[str, Any]) -> str:
    return str(record.get("storage_location") or "?").split("/", 1)[0]


# One action per feature; each reads the raw record and the features for the sample's own numbers.
_ACTIONS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], str]] = {
    "freeze_thaw_cycles": lambda r, f: (
        f"Limit freeze-thaw cycles: {_shown(r.get('freeze_thaw_cycles'))} recorded; aliquot before the next thaw."
    ),
    "integrity_score": lambda r, f: (
        f"Re-extract: integrity is low (RIN {_shown(r.get('rin'))}, DIN {_shown(r.get('din'))}); check the extraction protocol."
    ),
    "purity_score": lambda r, f: (
        f"Clean up and re-quantify: A260/280 {_shown(r.get('a260_280'))}, A260/230 {_shown(r.get('a260_230'))} are off the ideal."
    ),
    "log_concentration": lambda r, f: (
        f"Re-quantify: concentration {_shown(r.get('concentration_ng_ul'))} ng/µL is low for library preparation."
    ),
    "total_yield_ng": lambda r, f: (
        f"Re-quantify or concentrate: total yield {_shown(f.get('total_yield_ng'))} ng may not be enough."
    ),
    "storage_temp_deviation_c": lambda r, f: (
        f"Check freezer {_freezer(r)}: stored at {_shown(r.get('storage_temp_c'))} °C, "
        f"{_shown(f.get('storage_temp_deviation_c'))} °C from the target for {_shown(r.get('sample_type'))}."
    ),
    "max_temp_deviation_c": lambda r, f: (
        f"Check freezer {_freezer(r)}: an excursion of {_shown(r.get('max_temp_deviation_c'))} °C was recorded."
    ),
    "temp_excursion_rate_per_day": lambda r, f: (
        f"Check freezer {_freezer(r)} and its alarm log: {_shown(r.get('temp_excursions'))} temperature excursions."
    ),
    "processing_delay_hours": lambda r, f: (
        f"Extract promptly: {_shown(f.get('processing_delay_hours'))} h between receipt and extraction."
    ),
    "processing_delay_category": lambda r, f: (
        f"Extract promptly: processing delay is '{_shown(f.get('processing_delay_category'))}'."
    ),
    "sample_age_hours": lambda r, f: (
        f"Prioritise: the sample is {_shown(f.get('sample_age_hours'))} h old; consider requesting a fresh sample."
    ),
    "transit_time_hours": lambda r, f: (
        f"Review shipping from {_shown(r.get('site'))}: {_shown(f.get('transit_time_hours'))} h in transit."
    ),
    "operator_failure_rate": lambda r, f: (
        f"Review handling with operator {_shown(r.get('operator_id'))} (recent failure rate "
        f"{_shown(f.get('operator_failure_rate'))})."
    ),
    "site_failure_rate": lambda r, f: (
        f"Review collection and shipping at {_shown(r.get('site'))} (recent failure rate {_shown(f.get('site_failure_rate'))})."
    ),
    "box_utilisation": lambda r, f: (
        f"Check box {_shown(r.get('storage_location'))}: {_shown(r.get('box_occupancy'))} of 100 positions used."
    ),
    "freezer_utilisation": lambda r, f: f"Check freezer {_freezer(r)}: it is heavily loaded.",
    "quality_risk_score": lambda r, f: "Several handling risks combine: review storage and processing history.",
}


def recommendations(factors: list[RiskFactor], record: Mapping[str, Any], features: Mapping[str, Any]) -> list[str]:
    """One action per risk factor that has one, in the factors' order, without repeats."""
    actions = (_ACTIONS.get(factor.feature) for factor in factors)
    return distinct_actions(action(record, features) if action is not None else None for action in actions)
