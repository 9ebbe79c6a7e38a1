"""The soft-coverage benchmark's measures (benchmarks/rag_soft_coverage.py): MaxSim of the question's words.

The word scores come from the product's ONNX MiniLM (its last hidden state), so the model test
checks what the measure rests on: a word the passage holds scores far above one it does not.
The arithmetic of the three measures is checked on hand-made scores, so every number is known.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from benchmarks.rag_soft_coverage import soft_coverage, weakest, word_scores
from tracseq_dagster.documents.onnx_embedding import OnnxMiniLMEmbedder


def test_weighted_mean_with_exact_terms_in_full_and_a_floor() -> None:
    weights = {"octet": 3.0, "backslash": 1.0}
    scores = {"octet": 0.9, "backslash": 0.6}
    assert soft_coverage(weights, scores) == pytest.approx((3 * 0.9 + 0.6) / 4)
    assert soft_coverage(weights, scores, {"octet"}) == pytest.approx((3 + 0.6) / 4)
    # Above the floor a score is rescaled to 0..1, below it counts as nothing.
    assert soft_coverage(weights, scores, {"octet"}, floor=0.5) == pytest.approx((3 + 0.2) / 4)
    assert soft_coverage(weights, scores, floor=0.7) == pytest.approx(3 * (0.2 / 0.3) / 4)
    assert soft_coverage({}, scores) == 1.0
    # Scores are per word, weights per stemmed term: "octets" scores for "octet".
    assert soft_coverage({"octet": 1.0}, {"octets": 0.8}) == pytest.approx(0.8)


def test_weakest_is_the_lowest_score_of_a_word_not_held_exactly() -> None:
    scores = {"octets": 0.2, "backslash": 0.4, "written": 0.5}
    assert weakest(scores, set()) == pytest.approx(0.2)
    assert weakest(scores, {"octet"}) == pytest.approx(0.4)  # held exactly (as a stemmed term): not counted
    assert weakest(scores, {"octet", "backslash", "written"}) == 1.0


def test_a_word_the_passage_holds_scores_above_one_it_does_not() -> None:
    passage = SimpleNamespace(
        title="ASN.1 strings", section="Escapes", text="Each octet of the string is written in hexadecimal."
    )
    scores = word_scores(OnnxMiniLMEmbedder(), "How is an octet of a string written, and what is its parquet schema?", [passage])
    assert set(scores) == {"octet", "string", "written", "parquet", "schema"}  # content words only
    assert scores["octet"] > 0.8 and scores["string"] > 0.8
    assert scores["parquet"] < scores["octet"] - 0.3 and scores["schema"] < scores["octet"] - 0.3
    assert word_scores(OnnxMiniLMEmbedder(), "What is an octet?", []) == {}


def test_static_scores_give_a_word_held_exactly_full_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.rag_soft_coverage as bench

    monkeypatch.setattr(bench, "_states", bench._static_states)  # what --static does
    passage = SimpleNamespace(title="", section="", text="Each octet of the string is written in hexadecimal.")
    scores = word_scores(OnnxMiniLMEmbedder(), "Is an octet written in parquet?", [passage])
    assert scores["octet"] == pytest.approx(1.0, abs=1e-5) and scores["written"] == pytest.approx(1.0, abs=1e-5)
    assert scores["parquet"] < 0.6  # no piece of it in the passage: its best match is another word's piece
