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
from dataclasses import dataclass
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
            numbers = (
                frame[self.numeric].to_numpy(dtype=np.float64, na_value=np.nan) if self.numeric else np.empty((len(frame), 0))
            )
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
                labels = np.append(np.asarray(column.cat.categories.astype(str), dtype=object), np.array([None], dtype=object))
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
    """``pipeline[:-1]`` in numpy (see the module docstring), with each output column's origin.

    Everything a call needs is read from the fitted steps once, here: a micro-batch pays a few
    dozen array operations, no per-call inspection of the transformers.
    """

    def __init__(self, inputs: RawInputs, numeric_steps: list[_Imputer | _Scaler], categorical: _Encoding | None,
                 origins: np.ndarray) -> None:  # fmt: skip
        self.inputs = inputs
        self._numeric_steps = numeric_steps
        self._categorical = categorical
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
            numeric_steps, numeric_origins = _numeric_steps(_steps(parts["numeric"][0]) if numeric else [], len(numeric))
            encoding = _Encoding.of(_steps(parts["categorical"][0])) if categorical else None
            inputs = RawInputs(numeric, categorical, encoding.categories if encoding else [])
            categorical_origins = encoding.origins if encoding else np.zeros(0, dtype=np.int64)
            origins = np.concatenate([numeric_origins, len(numeric) + categorical_origins]).astype(np.int64)
        except (AttributeError, KeyError, TypeError, _Unknown):
            return None
        return cls(inputs, numeric_steps, encoding, origins)

    def transform(self, x: pd.DataFrame | FeatureColumns) -> np.ndarray:
        """What ``pipeline[:-1].transform`` answers for ``x``, as float64."""
        numbers = self.inputs.numbers(x)
        for step in self._numeric_steps:
            numbers = step.apply(numbers)
        if self._categorical is None:
            return np.ascontiguousarray(numbers)
        return np.column_stack([numbers, self._categorical.apply(self.inputs.codes(x))])

    def agrees(self, mine: np.ndarray, theirs: np.ndarray) -> bool:
        """Whether this transform equals the pipeline's on the same rows (NaN where NaN)."""
        theirs = np.asarray(theirs, dtype=np.float64)
        return mine.shape == theirs.shape and bool(np.allclose(mine, theirs, equal_nan=True, rtol=1e-12, atol=1e-12))


@dataclass(frozen=True)
class _Imputer:
    """A fitted numeric SimpleImputer: fill, drop the columns it drops, append missing indicators."""

    statistics: np.ndarray
    kept: np.ndarray
    indicated: np.ndarray

    def apply(self, numbers: np.ndarray) -> np.ndarray:
        missing = np.isnan(numbers)
        filled = np.where(missing, self.statistics, numbers)[:, self.kept]
        return np.column_stack([filled, missing[:, self.indicated]]) if len(self.indicated) else filled


@dataclass(frozen=True)
class _Scaler:
    mean: np.ndarray | float
    scale: np.ndarray | float

    def apply(self, numbers: np.ndarray) -> np.ndarray:
        return (numbers - self.mean) / self.scale


def _numeric_steps(steps: list[Any], width: int) -> tuple[list[_Imputer | _Scaler], np.ndarray]:
    """The numeric part's steps, read once, and each output column's input column."""
    origins = np.arange(width)
    out: list[_Imputer | _Scaler] = []
    for step in steps:
        kind = _kind(step)
        if kind == "SimpleImputer":
            kept, indicated = _imputer_kept(step, len(origins)), _indicated(step)
            out.append(_Imputer(np.asarray(step.statistics_, dtype=np.float64), kept, indicated))
            origins = np.concatenate([origins[kept], origins[indicated]])
        elif kind == "StandardScaler":
            mean = step.mean_ if step.with_mean and step.mean_ is not None else 0.0
            scale = step.scale_ if step.with_std and step.scale_ is not None else 1.0
            out.append(_Scaler(mean, scale))
        else:
            raise _Unknown
    return out, origins


@dataclass(frozen=True)
class _Encoding:
    """The categorical part: optional constant imputer, then an ordinal or one-hot encoder."""

    categories: list[list[Any]]  # the encoder's, per column
    one_hot: bool
    missing_to: np.ndarray  # per column: the code a missing value takes (a category, MISSING or UNSEEN)
    missing_value: np.ndarray  # ordinal: per column, the output of a missing value
    unseen_value: float  # ordinal: the output of an unseen category
    offsets: np.ndarray  # one-hot: first output column of each input column
    origins: np.ndarray  # per output column: its input column

    @classmethod
    def of(cls, steps: list[Any]) -> _Encoding:
        if not steps:
            raise _Unknown  # categories passed through as strings: no encoder to read them
        encoder, imputers = steps[-1], steps[:-1]
        kind = _kind(encoder)
        if kind not in ("OrdinalEncoder", "OneHotEncoder"):
            raise _Unknown
        for step in imputers:
            if _kind(step) != "SimpleImputer" or step.strategy != "constant" or getattr(step, "indicator_", None) is not None:
                raise _Unknown
        one_hot = kind == "OneHotEncoder"
        if one_hot and (encoder.drop is not None or getattr(encoder, "_infrequent_enabled", False)):
            raise _Unknown
        # handle_unknown="error" would refuse a row with a new category: the families never ask for it
        if encoder.handle_unknown != ("ignore" if one_hot else "use_encoded_value"):
            raise _Unknown
        categories = [list(c) for c in encoder.categories_]
        nan_at = [next((k for k, c in enumerate(cats) if pd.isna(c)), None) for cats in categories]
        missing_to = np.full(len(categories), MISSING, dtype=np.int64)
        for j, cats in enumerate(categories):
            if imputers:  # a constant imputer turns a missing value into its fill value first
                fill = [k for k, c in enumerate(cats) if not pd.isna(c) and str(c) == str(imputers[-1].fill_value)]
                missing_to[j] = fill[0] if fill else UNSEEN
            elif one_hot and (nan_category := nan_at[j]) is not None:
                missing_to[j] = nan_category
        sizes = np.array([len(c) for c in categories], dtype=np.int64)
        unseen = float(np.nan if one_hot else encoder.unknown_value)
        # ordinal: a missing value is a category of its own when training had one, else an unknown one
        missing_value = np.array([np.nan if one_hot else (encoder.encoded_missing_value if at is not None else unseen)
                                  for at in nan_at], dtype=np.float64)  # fmt: skip
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        origins = np.repeat(np.arange(len(categories)), sizes) if one_hot else np.arange(len(categories))
        return cls(categories, one_hot, missing_to, missing_value, unseen, offsets, origins)

    def apply(self, codes: np.ndarray) -> np.ndarray:
        codes = np.where(codes == MISSING, self.missing_to, codes)
        if not self.one_hot:
            out = codes.astype(np.float64)
            out = np.where(codes == MISSING, self.missing_value, out)
            return np.where(codes == UNSEEN, self.unseen_value, out)
        out = np.zeros((len(codes), int(self.offsets[-1]) + len(self.categories[-1])))
        rows, columns = np.nonzero(codes >= 0)  # UNSEEN (handle_unknown="ignore") and MISSING without a category: all zeros
        out[rows, self.offsets[columns] + codes[rows, columns]] = 1.0
        return out


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
