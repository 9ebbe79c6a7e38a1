"""From a user's table to model input: which columns are features, and how each family sees them.

Feature selection (:func:`prepare_features`) — every other column of the frame is a candidate:

* booleans become 0/1 floats (missing stays missing);
* datetimes become numbers: days since 1970-01-01 UTC (naive times are read as UTC), so
  "how recent" can be learned; timedeltas become seconds;
* strings/objects whose non-null values all parse as numbers become numbers (CSV exports);
* other strings, objects and pandas categoricals are categorical features; those with more than
  :data:`MAX_CATEGORIES` distinct values (airports, tail numbers, travel agents, countries)
  are *wide* categoricals: the tree families see them as integer codes, the one-hot families
  (linear, MLP) leave them out, since one column per value would be thousands of columns;
* dropped, with the reason recorded: columns that are entirely null; constant columns (one
  distinct non-null value); categorical columns with more than :data:`MAX_WIDE_CATEGORIES`
  distinct values or whose values are nearly all distinct (more than :data:`UNIQUE_FRACTION`
  of the non-null rows, with more than 10 of them) — identifiers and free text, which a model
  cannot generalise from; columns of any other dtype (e.g. complex, lists).

The column transformers are built from the resulting dtypes, never from column names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

#: Categorical columns with more distinct values than this are one-hot encoded no more: they are
#: wide categoricals, integer codes for the tree families only.
MAX_CATEGORIES = 50
#: Categorical columns with more distinct values than this are dropped as ids / free text.
MAX_WIDE_CATEGORIES = 10_000
#: ... as are categorical columns whose distinct values exceed this share of the non-null rows.
UNIQUE_FRACTION = 0.9
_MISSING = "__missing__"


@dataclass(frozen=True)
class FeatureColumns:
    """The usable feature columns of a prepared frame, by kind."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    dropped: dict[str, str] = field(default_factory=dict)  # column → why it was dropped
    wide: tuple[str, ...] = ()  # categoricals with more than MAX_CATEGORIES values: trees only

    @property
    def all(self) -> list[str]:
        """Numeric, categorical then wide categorical column names, the order of the prepared frame."""
        return [*self.numeric, *self.categorical, *self.wide]


def prepare_features(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, FeatureColumns]:
    """Select and convert the feature columns of ``frame`` (every column but ``target``).

    Returns the feature frame (numeric columns as ``float64``, categorical ones as ``object``
    strings with ``NaN`` for missing) and the column kinds. See the module docstring for the rules.
    """
    numeric: dict[str, pd.Series] = {}
    categorical: dict[str, pd.Series] = {}
    wide: dict[str, pd.Series] = {}
    dropped: dict[str, str] = {}
    for name in frame.columns:
        if name == target:
            continue
        column = frame[name]
        converted, kind = _convert(column)
        if kind is None:
            dropped[str(name)] = f"unsupported dtype {column.dtype}"
            continue
        non_null = converted.dropna()
        distinct = non_null.nunique()
        if non_null.empty:
            dropped[str(name)] = "all null"
        elif distinct == 1:
            dropped[str(name)] = "constant"
        elif kind == "categorical" and distinct > MAX_WIDE_CATEGORIES:
            dropped[str(name)] = f"{distinct} distinct values (more than {MAX_WIDE_CATEGORIES}: id or free text)"
        elif kind == "categorical" and distinct > 10 and distinct > UNIQUE_FRACTION * len(non_null):
            dropped[str(name)] = "nearly every value distinct (id or free text)"
        elif kind == "categorical" and distinct > MAX_CATEGORIES:
            wide[str(name)] = converted
        else:
            (numeric if kind == "numeric" else categorical)[str(name)] = converted
    columns = FeatureColumns(tuple(numeric), tuple(categorical), dropped, tuple(wide))
    prepared = pd.DataFrame({**numeric, **categorical, **wide}, index=frame.index)
    return prepared[columns.all], columns


def _convert(column: pd.Series) -> tuple[pd.Series, str | None]:
    """The column as model input and its kind ("numeric", "categorical" or None = unusable)."""
    dtype = column.dtype
    if (
        pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
        or (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype))
    ):
        return as_numeric(column), "numeric"
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype) or dtype is np.dtype(object):
        if not isinstance(dtype, pd.CategoricalDtype):
            parsed = pd.to_numeric(column, errors="coerce")
            if parsed.notna().sum() == column.notna().sum() and column.notna().any():
                return as_numeric(column), "numeric"
        return as_categorical(column), "categorical"
    return column, None


def as_numeric(column: pd.Series) -> pd.Series:
    """A numeric feature as ``float64``: booleans 0/1, datetimes days since the epoch (UTC),
    timedeltas seconds, numeric strings parsed; anything unparsable or infinite becomes NaN."""
    dtype = column.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        utc = column.dt.tz_localize("UTC") if column.dt.tz is None else column.dt.tz_convert("UTC")
        return ((utc - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1)).astype("float64")
    if pd.api.types.is_timedelta64_dtype(dtype):
        return column.dt.total_seconds().astype("float64")
    if pd.api.types.is_bool_dtype(dtype):
        return column.astype("float64")
    values = pd.to_numeric(column, errors="coerce").astype("float64")
    return values.replace([np.inf, -np.inf], np.nan)


def as_categorical(column: pd.Series) -> pd.Series:
    """A categorical feature as ``object`` strings, missing as ``NaN`` (what the encoders expect)."""
    return pd.Series(
        np.where(column.notna(), column.astype(str).to_numpy(dtype=object), np.nan), index=column.index, dtype=object
    )


class FeatureConverter(TransformerMixin, BaseEstimator):
    """First step of every pipeline: the user's columns → model-ready dtypes (stateless).

    Because the conversion is part of the model, the fitted model takes frames exactly like
    the one it was trained on (datetimes, booleans, pandas strings) and ignores extra columns.
    """

    def __init__(self, numeric: tuple[str, ...] = (), categorical: tuple[str, ...] = ()) -> None:
        self.numeric = numeric
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y: object = None) -> FeatureConverter:
        missing = [c for c in (*self.numeric, *self.categorical) if c not in X.columns]
        if missing:
            raise ValueError(f"feature columns missing from the input: {', '.join(missing)}")
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        # Plain numeric and boolean columns are converted as one block: this runs on every fold
        # fit and prediction, and per-column pandas calls would dominate a fast model's fit time.
        plain = [c for c in self.numeric if _is_plain_number(X[c].dtype)]
        block = X[plain].to_numpy(dtype="float64", na_value=np.nan) if plain else np.empty((len(X), 0))
        block[~np.isfinite(block)] = np.nan
        converted: dict[str, object] = dict(zip(plain, block.T, strict=True))
        converted |= {c: as_numeric(X[c]) for c in self.numeric if c not in converted}
        converted |= {c: as_categorical(X[c]) for c in self.categorical}
        frame = pd.DataFrame(converted, index=X.index)
        return frame[[*self.numeric, *self.categorical]]


def _is_plain_number(dtype: object) -> bool:
    return pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    )


def feature_converter(columns: FeatureColumns) -> FeatureConverter:
    """The :class:`FeatureConverter` for ``columns`` (wide categoricals are categorical to it)."""
    return FeatureConverter(columns.numeric, (*columns.categorical, *columns.wide))


# -- per-family preprocessing -----------------------------------------------------------------


def scaled_one_hot(columns: FeatureColumns) -> ColumnTransformer:
    """For linear models and neural networks: impute, standardise numbers, one-hot categories.

    Missing numbers get the median plus a missing-indicator column (missingness is often
    informative in lab data: a skipped QC step); missing categories become their own category.
    """
    numeric = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value=_MISSING)),
            ("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return _transformer(columns, numeric, categorical)


def ordinal_imputed(columns: FeatureColumns) -> ColumnTransformer:
    """For random forests: median-imputed numbers (with indicators), categories as integer codes.

    Trees split on codes without needing scale; unseen and missing categories get code -1.
    """
    numeric = SimpleImputer(strategy="median", add_indicator=True)
    categorical = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    return _transformer(columns, numeric, categorical, wide=True)


def ordinal_with_missing(columns: FeatureColumns) -> ColumnTransformer:
    """For the gradient boosters, which handle NaN natively: numbers untouched, categories as codes.

    Missing and unseen categories become NaN so the booster's own missing-value branch is used.
    Categorical columns come last in the output, which :func:`categorical_mask` relies on.
    """
    categorical = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)
    return _transformer(columns, "passthrough", categorical, wide=True)


def categorical_mask(columns: FeatureColumns) -> list[bool]:
    """Which output columns of :func:`ordinal_with_missing` are categorical codes.

    Wide categoricals are not: histogram boosting takes at most 255 categories a feature, so
    their codes are split on as ordered numbers (as LightGBM and XGBoost see every code here).
    """
    return [False] * len(columns.numeric) + [True] * len(columns.categorical) + [False] * len(columns.wide)


def _transformer(columns: FeatureColumns, numeric: object, categorical: object, *, wide: bool = False) -> ColumnTransformer:
    """``numeric`` on the numeric columns, ``categorical`` on the categorical ones (and the wide
    ones when ``wide``; without, they are left out)."""
    parts = []
    coded = [*columns.categorical, *(columns.wide if wide else ())]
    if columns.numeric:
        parts.append(("numeric", numeric, list(columns.numeric)))
    if coded:
        parts.append(("categorical", categorical, coded))
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)
