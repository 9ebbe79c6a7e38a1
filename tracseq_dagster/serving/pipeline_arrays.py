"""A fitted pipeline's preprocessing (``features`` → ``preprocess``) redone in numpy, with where each column comes from.

Every AutoML pipeline is ``FeatureConverter`` → a ``ColumnTransformer`` of a ``numeric`` and a
``categorical`` part (:mod:`tracseq_dagster.automl.preprocessing`) → the estimator. The
pandas steps cost about 20 ms per call whatever the rows (a micro-batch of a few records pays
it in full); the same arithmetic on arrays costs well under one. This module reads the fitted
steps (medians, missing indicators, scalers, encoders' category lists) and applies them to:

* the numbers as they are (NaN where missing or not finite), and
* each category as its position in the final encoder's category list, with two codes of its
  own for a missing value (:data:`MISSING`) and a value the encoder never saw (:data:`UNSEEN`):
  a one-hot encoder treats them differently (the imputer's ``__missing__`` column against all
  zeros), ordinal encoders may too.

It also says, for every output column, which converter column (raw feature) it comes from
(``origins``): a scaled number and its missing indicator both belong to that number's feature,
each one-hot column to its category's feature. That is what maps attributions computed on the
estimator's columns back to the features a lab reads.

Only the transformers the families use are known (passthrough, ``SimpleImputer`` with or
without indicator, ``StandardScaler``, ``OrdinalEncoder``, ``OneHotEncoder`` without drop or
infrequent categories, and pipelines of them); :meth:`PreprocessArrays.of` returns None for
anything else, and the scorer keeps the pipeline's own transform. The result is checked once
against the pipeline's (:meth:`PreprocessArrays.agrees`) before it is trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.features import FEATURE_SPEC_BY_NAME, FeatureColumns

#: Category code of a missing value.
MISSING = -1
#: Category code of a value the encoder did not see in training.
UNSEEN = -2


class _Unknown(Exception):
    """A transformer this module does not reproduce."""


class RawInputs:
    """The converter's columns as arrays: numbers (NaN where missing), categories as codes."""

    def __init__(self, numeric: Sequence[str], categorical: Sequence[str], categories: Sequence[Sequence[Any]]) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.indexes = [pd.Index([str(c) for c in cats if not pd.isna(c)], dtype=object) for cats in categories]
        self._spec_codes: dict[str, np.ndarray] = {}

    @property
    def columns(self) -> list[str]:
        """Converter column order: numeric, then categorical."""
        return [*self.numeric, *self.categorical]

    def numbers(self, x: pd.DataFrame | FeatureColumns) -> np.ndarray:
        """(rows, numeric) float64, NaN where missing or not finite."""
        if isinstance(x, FeatureColumns) and set(self.numeric) <= set(x.numeric):
            numbers = np.empty((len(x), len(self.numeric)))
            for j, name in enumerate(self.numeric):
                numbers[:, j] = x.numeric[name]
        else:
            frame = x.frame(sort=False) if isinstance(x, FeatureColumns) else x
            numbers = frame[self.numeric].to_numpy(dtype=np.float64, na_value=np.nan) if self.numeric else np.empty((len(frame), 0))
        numbers[~np.isfinite(numbers)] = np.nan
        return numbers

    def codes(self, x: pd.DataFrame | FeatureColumns) -> np.ndarray:
        """(rows, categorical) int64: position in the encoder's categories, MISSING or UNSEEN."""
        out = np.empty((len(x), len(self.categorical)), dtype=np.int64)
        if isinstance(x, FeatureColumns) and set(self.categorical) <= set(x.codes):
            for j, name in enumerate(self.categorical):
                out[:, j] = self._from_spec_codes(name)[x.codes[name]]
            return out
        frame = x.frame(sort=False) if isinstance(x, FeatureColumns) else x
        for j, (name, index) in enumerate(zip(self.categorical, self.indexes, strict=True)):
            column = frame[name]
            if isinstance(column.dtype, pd.CategoricalDtype):
                labels = np.append(np.asarray(column.cat.categories.astype(str), dtype=object), None)
                found = np.append(index.get_indexer(labels[:-1]), MISSING)
                found[:-1][found[:-1] < 0] = UNSEEN
                out[:, j] = found[column.cat.codes.to_numpy()]  # code -1 (missing) picks the trailing MISSING
                continue
            missing = column.isna().to_numpy()
            values = column.astype(object).where(~missing, None).to_numpy(dtype=object)
            found = index.get_indexer([str(v) if v is not None else None for v in values])
            out[:, j] = np.where(missing, MISSING, np.where(found < 0, UNSEEN, found))
        return out

    def _from_spec_codes(self, name: str) -> np.ndarray:
        """Per code of the sample feature's spec categories (and -1, last): its encoder code."""
        if name not in self._spec_codes:
            index = self.indexes[self.categorical.index(name)]
            found = index.get_indexer([str(c) for c in FEATURE_SPEC_BY_NAME[name].categories or ()])
            self._spec_codes[name] = np.append(np.where(found < 0, UNSEEN, found), MISSING)
        return self._spec_codes[name]


class PreprocessArrays:
    """``pipeline[:-1]`` in numpy (see the module docstring), with each output column's origin."""

    def __init__(self, inputs: RawInputs, numeric_steps: list[Any], categorical_steps: list[Any], origins: np.ndarray) -> None:
        self.inputs = inputs
        self._numeric_steps = numeric_steps
        self._categorical_steps = categorical_steps
        self.origins = origins  # per output column: index into inputs.columns
        self.checked = False

    @classmethod
    def of(cls, pipeline: Any) -> PreprocessArrays | None:
        """For an AutoML pipeline (``features`` → ``preprocess`` → estimator); None for another layout."""
        try:
            converter = pipeline.named_steps["features"]
            preprocess = pipeline.named_steps["preprocess"]
            numeric, categorical = list(converter.numeric), list(converter.categorical)
            parts = {name: (transformer, list(columns)) for name, transformer, columns in preprocess.transformers_}
            if set(parts) - {"numeric", "categorical", "remainder"} or preprocess.remainder != "drop":
                raise _Unknown
            if parts.get("numeric", (None, []))[1] != numeric or parts.get("categorical", (None, []))[1] != categorical:
                raise _Unknown
            numeric_steps = _steps(parts["numeric"][0]) if numeric else []
            categorical_steps = _steps(parts["categorical"][0]) if categorical else []
            categories = _encoder_categories(categorical_steps, len(categorical))
            inputs = RawInputs(numeric, categorical, categories)
            origins = np.concatenate([_numeric_origins(numeric_steps, len(numeric)),
                                      len(numeric) + _categorical_origins(categorical_steps, categories)]).astype(np.int64)  # fmt: skip
        except (AttributeError, KeyError, TypeError, _Unknown):
            return None
        return cls(inputs, numeric_steps, categorical_steps, origins)

    def transform(self, x: pd.DataFrame | FeatureColumns) -> np.ndarray:
        """What ``pipeline[:-1].transform`` answers for ``x``, as float64."""
        numbers = self.inputs.numbers(x)
        for step in self._numeric_steps:
            numbers = _numeric_step(step, numbers)
        codes = self.inputs.codes(x)
        parts = [numbers, _categorical_output(self._categorical_steps, codes)] if self.inputs.categorical else [numbers]
        return np.column_stack(parts) if len(parts) > 1 else np.ascontiguousarray(parts[0])

    def agrees(self, mine: np.ndarray, theirs: np.ndarray) -> bool:
        """Whether this transform equals the pipeline's on the same rows (NaN where NaN)."""
        theirs = np.asarray(theirs, dtype=np.float64)
        return mine.shape == theirs.shape and bool(np.allclose(mine, theirs, equal_nan=True, rtol=1e-12, atol=1e-12))


def _steps(transformer: Any) -> list[Any]:
    """A transformer as its list of steps (a Pipeline's, or itself; passthrough is none)."""
    if isinstance(transformer, str):
        if transformer == "passthrough":
            return []
        raise _Unknown
    if type(transformer).__name__ == "FunctionTransformer" and transformer.func is None:
        return []  # how a fitted ColumnTransformer keeps "passthrough"
    return [step for _, step in transformer.steps] if hasattr(transformer, "steps") else [transformer]


def _kind(step: Any) -> str:
    name = type(step).__name__
    if name not in ("SimpleImputer", "StandardScaler", "OrdinalEncoder", "OneHotEncoder"):
        raise _Unknown
    return name


def _numeric_origins(steps: list[Any], width: int) -> np.ndarray:
    origins = np.arange(width)
    for step in steps:
        kind = _kind(step)
        if kind == "SimpleImputer":
            kept = _imputer_kept(step, width)
            indicated = _indicated(step)
            origins = np.concatenate([origins[kept], origins[indicated]])
            width = len(origins)
        elif kind != "StandardScaler":
            raise _Unknown
    return origins


def _imputer_kept(imputer: Any, width: int) -> np.ndarray:
    """The input columns a fitted SimpleImputer keeps (it drops columns that were all missing)."""
    statistics = np.asarray(imputer.statistics_)
    if imputer.strategy == "constant" or getattr(imputer, "keep_empty_features", False):
        return np.arange(width)
    return np.flatnonzero(~pd.isna(statistics))


def _indicated(imputer: Any) -> np.ndarray:
    indicator = getattr(imputer, "indicator_", None)
    if indicator is None:
        return np.zeros(0, dtype=np.int64)
    if indicator.features != "missing-only" or indicator.sparse not in (False, "auto"):
        raise _Unknown
    return np.asarray(indicator.features_, dtype=np.int64)


def _numeric_step(step: Any, numbers: np.ndarray) -> np.ndarray:
    kind = _kind(step)
    if kind == "SimpleImputer":
        statistics = np.asarray(step.statistics_, dtype=np.float64)
        kept = _imputer_kept(step, numbers.shape[1])
        missing = np.isnan(numbers)
        filled = np.where(missing, statistics, numbers)[:, kept]
        indicated = _indicated(step)
        return np.column_stack([filled, missing[:, indicated].astype(np.float64)]) if len(indicated) else filled
    if kind == "StandardScaler":
        out = numbers
        if step.mean_ is not None and step.with_mean:
            out = out - step.mean_
        if step.scale_ is not None and step.with_std:
            out = out / step.scale_
        return out
    raise _Unknown


def _encoder_categories(steps: list[Any], width: int) -> list[list[Any]]:
    """The final encoder's category lists (what the codes index); every column's kept categories."""
    if not steps:
        return [[] for _ in range(width)]
    encoder = steps[-1]
    if _kind(encoder) not in ("OrdinalEncoder", "OneHotEncoder"):
        raise _Unknown
    for step in steps[:-1]:
        if _kind(step) != "SimpleImputer" or step.strategy != "constant" or getattr(step, "indicator_", None) is not None:
            raise _Unknown
    if _kind(encoder) == "OneHotEncoder" and (encoder.drop is not None or getattr(encoder, "_infrequent_enabled", False)):
        raise _Unknown
    return [list(c) for c in encoder.categories_]


def _categorical_origins(steps: list[Any], categories: list[list[Any]]) -> np.ndarray:
    if not steps:
        return np.arange(len(categories))
    if _kind(steps[-1]) == "OneHotEncoder":
        return np.concatenate([np.full(len(c), j) for j, c in enumerate(categories)]) if categories else np.zeros(0, dtype=np.int64)
    return np.arange(len(categories))


def _categorical_output(steps: list[Any], codes: np.ndarray) -> np.ndarray:
    """The encoder's output for the codes: a constant imputer first turns MISSING into its fill value's code."""
    encoder = steps[-1] if steps else None
    codes = codes.copy()
    for step in steps[:-1]:  # constant imputers (checked in _encoder_categories)
        for j, categories in enumerate(encoder.categories_):
            fill = [k for k, c in enumerate(categories) if not pd.isna(c) and str(c) == str(step.fill_value)]
            codes[codes[:, j] == MISSING, j] = fill[0] if fill else UNSEEN
    if encoder is None:
        raise _Unknown
    nan_code = [next((k for k, c in enumerate(cats) if pd.isna(c)), None) for cats in encoder.categories_]
    if _kind(encoder) == "OrdinalEncoder":
        out = codes.astype(np.float64)
        for j, nan_at in enumerate(nan_code):
            if encoder.handle_unknown != "use_encoded_value":
                raise _Unknown  # "error" would refuse the row; the families never ask for it
            # a missing value is a category of its own when training had one, else an unknown one
            out[codes[:, j] == MISSING, j] = encoder.encoded_missing_value if nan_at is not None else encoder.unknown_value
            out[codes[:, j] == UNSEEN, j] = encoder.unknown_value
        return out
    blocks = []
    for j, cats in enumerate(encoder.categories_):
        block = np.zeros((len(codes), len(cats)))
        column = codes[:, j].copy()
        if nan_code[j] is not None:
            column[column == MISSING] = nan_code[j]
        rows = np.flatnonzero(column >= 0)
        block[rows, column[rows]] = 1.0  # UNSEEN (handle_unknown="ignore") and MISSING without a NaN category: all zeros
        blocks.append(block)
    if encoder.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise _Unknown
    return np.column_stack(blocks) if blocks else np.empty((len(codes), 0))
