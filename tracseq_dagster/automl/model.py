"""The model the engine hands back: a fitted pipeline that speaks the user's labels.

The sweep trains every classifier on labels encoded 0..k-1 (XGBoost insists on it, and one
encoding keeps the families comparable). :class:`LabelDecodingClassifier` wraps such a pipeline
so that ``predict`` returns the original labels (``"pass"``, ``"fail"``, …) and ``classes_``
names the columns of ``predict_proba``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.preprocessing import LabelEncoder


class LabelDecodingClassifier(ClassifierMixin, BaseEstimator):
    """Fit ``estimator`` on encoded labels; predict in the original labels.

    Built prefit by the engine (``from_fitted``); ``fit`` also works, so the object can be
    refit or cross-validated like any scikit-learn classifier.
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    @classmethod
    def from_fitted(cls, fitted: Any, classes: np.ndarray) -> LabelDecodingClassifier:
        """Wrap an estimator already fitted on ``LabelEncoder().fit(classes)`` codes."""
        wrapper = cls(fitted)
        wrapper.estimator_ = fitted
        wrapper.encoder_ = LabelEncoder().fit(classes)
        wrapper.classes_ = wrapper.encoder_.classes_
        return wrapper

    def fit(self, X: Any, y: Any, **fit_params: Any) -> LabelDecodingClassifier:
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        self.estimator_ = clone(self.estimator).fit(X, self.encoder_.transform(y), **fit_params)
        return self

    def predict(self, X: Any) -> np.ndarray:
        return self.encoder_.inverse_transform(np.asarray(self.estimator_.predict(X), dtype=np.int64))

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.estimator_.predict_proba(X)
