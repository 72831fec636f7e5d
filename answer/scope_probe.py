"""Does a question ask the kind of thing the review answers? A linear probe on its embedding.

The unknown-name check (``answer.scope``) catches a question naming what the corpus never
mentions. Many questions a clinician asks name only what the review knows and still ask about
something it never discusses: "How should mouth ulcers caused by everolimus be managed?",
"长效奥曲肽漏打了一针，要不要补打？", vaccines, diet, cost, monitoring, surgery decisions. The
evidence retrieved for them is about the right drug, so its scores look like an answer, and the
quotes would answer another question.

What such a question asks is in its wording around the names, so the probe reads the question with
every glossary term replaced by its type ("How should mouth ulcers caused by DRUG be managed?"), and
a logistic regression gives the probability that the review does not cover what is asked. It reads
three things of the masked question: its vector, embedded like a query (what it means, in either
language), and the TF-IDF weights of its character n-grams (the words it is asked in: 漏打, ulcers,
dose adjustment, which a small embedding model blurs into the drug's context), and how much of its
own wording the corpus holds (``corpus_coverage``: a question asked in the review's words, 年会 and
报道, is likelier one it answers). Its weights are fit on the tune half of the scope and eval sets
only (``benchmarks/tune_scope.py probe``), with the threshold chosen there by cross-validation, and
saved in ``data/scope_probe.json`` beside the embedding model they were fit for: under another
embedding model the probe does not apply.
"""

from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from nenqa.errors import MalformedRecordError, UnreadableFileError
from nenqa.glossary import Glossary, normalize_text
from nenqa.text import CJK_RANGE
from nenqa.types import Question

log = logging.getLogger("nenqa.scope")

PROBE_FILE = "scope_probe.json"
# The character n-grams the probe reads, within word boundaries: single characters carry
# Chinese words, three letters an English word's stem.
NGRAM_RANGE = (1, 3)


def ngram_vectorizer(
    vocabulary: dict[str, int] | None = None, idf: np.ndarray | None = None, min_df: int = 2
) -> TfidfVectorizer:
    """The probe's TF-IDF of character n-grams: unfit (to fit on the tune half, n-grams in at
    least ``min_df`` questions), or as fit (``vocabulary`` and ``idf``, read from the file)."""
    vectorizer = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=NGRAM_RANGE,
        sublinear_tf=True,
        min_df=min_df,
        vocabulary=vocabulary,
        dtype=np.float32,
    )
    if idf is not None:
        vectorizer.idf_ = idf
    return vectorizer


# What ``corpus_coverage`` leaves out: the types masking glossary names (DRUG) and other runs of
# capitals (ASCO, PFS), which the unknown-name check reads; and the words it counts.
_CAPITALS = re.compile(r"(?<![A-Za-z])[A-Z][A-Z0-9-]+(?![A-Za-z])")
_CJK_RUN = re.compile(f"[{CJK_RANGE}]+")
_LONG_LATIN_WORD = re.compile(r"[a-z]{4,}")


def corpus_coverage(text: str, corpus: Any) -> np.ndarray:
    """Of a masked question's own wording, the share the corpus holds (``word in corpus``, a
    normalised text): of its Chinese character pairs, of its English words of four letters or
    more, and the lower of the two; 1 for a language it has none of."""
    words = normalize_text(_CAPITALS.sub(" ", text))
    pairs = [run[i : i + 2] for run in _CJK_RUN.findall(words) for i in range(len(run) - 1)]
    latin = _LONG_LATIN_WORD.findall(words)
    chinese = sum(p in corpus for p in pairs) / len(pairs) if pairs else 1.0
    english = sum(w in corpus for w in latin) / len(latin) if latin else 1.0
    return np.array([chinese, english, min(chinese, english)], dtype=np.float32)


@dataclass(frozen=True)
class NgramWeights:
    """The n-gram half of the probe: each n-gram's IDF and weight, in the vectorizer's order."""

    vocabulary: tuple[str, ...]
    idf: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        vectorizer = ngram_vectorizer({g: i for i, g in enumerate(self.vocabulary)}, self.idf)
        object.__setattr__(self, "_vectorizer", vectorizer)

    def logit(self, text: str) -> float:
        """The n-grams' share of the probe's logit for a masked question."""
        row = self._vectorizer.transform([text])
        return float(row.dot(self.weights)[0])


@dataclass(frozen=True)
class ScopeProbe:
    """Logistic-regression weights over a masked question's query vector, and where the file
    has them, its character n-grams and its corpus coverage."""

    model_id: str
    weights: np.ndarray
    bias: float
    # The probability from which a question is taken as asking what the review does not cover.
    threshold: float
    # How the weights were fit (items, halves, regularisation), kept with them for the record.
    provenance: dict[str, Any]
    # The threshold for a question whose only unknown words are rare ones (``ScopeCheck.
    # rare_words``: 胆结石, but also 样本量): at most ``threshold``, as such a word makes an
    # uncovered subject likelier. None (a probe file without it): ``threshold``.
    rare_threshold: float | None = None
    # The weights of the masked question's character n-grams; None: the vector's alone.
    ngrams: NgramWeights | None = None
    # The weights of its ``corpus_coverage``; None: not read.
    coverage_weights: np.ndarray | None = None

    def applies_to(self, embedder: Any) -> bool:
        """Whether ``embedder`` is the model the weights were fit on (its vectors mean the same)."""
        return getattr(embedder, "model_id", None) == self.model_id

    def threshold_for(self, *, rare_words: bool) -> float:
        """The probability from which a question is out of scope, with or without rare words."""
        return (
            self.threshold if self.rare_threshold is None or not rare_words else self.rare_threshold
        )

    def probability(self, vector: np.ndarray, text: str = "", corpus: Any = None) -> float:
        """The probability that the question of this masked query vector and masked text
        (``probe_text``) is out of scope, its wording looked up in ``corpus`` (the scope
        check's text), which a probe reading coverage needs."""
        logit = float(np.dot(self.weights, vector)) + self.bias
        if self.ngrams is not None:
            logit += self.ngrams.logit(text)
        if self.coverage_weights is not None:
            if corpus is None:
                raise ValueError("this scope probe reads the corpus: pass its text")
            logit += float(np.dot(self.coverage_weights, corpus_coverage(text, corpus)))
        return 1.0 / (1.0 + math.exp(-logit))

    def out_of_scope(
        self, question: Question, glossary: Glossary, embedder: Any, corpus: Any = None
    ) -> float | None:
        """The probability for ``question``, or ``None`` when the probe does not apply."""
        if not self.applies_to(embedder):
            return None
        text = probe_text(question, glossary)
        return self.probability(embedder.embed_queries([text])[0], text, corpus)

    @classmethod
    def load(cls, path: Path) -> ScopeProbe:
        """Read a probe file; a malformed one is refused with its name and what is wrong."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            weights = np.asarray(raw["weights"], dtype=np.float32)
            ngrams = _read_ngrams(raw["ngrams"]) if raw.get("ngrams") is not None else None
            coverage = raw.get("coverage_weights")
            if coverage is not None:
                coverage = np.asarray(coverage, dtype=np.float32)
                if coverage.shape != (3,):
                    raise ValueError("coverage_weights must be three numbers")
            probe = cls(
                model_id=str(raw["model_id"]),
                weights=weights,
                bias=float(raw["bias"]),
                threshold=float(raw["threshold"]),
                provenance=dict(raw.get("provenance", {})),
                rare_threshold=(
                    float(raw["rare_threshold"]) if raw.get("rare_threshold") is not None else None
                ),
                ngrams=ngrams,
                coverage_weights=coverage,
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise MalformedRecordError(path, 1, f"not a scope probe: {error}") from error
        if weights.ndim != 1 or not 0.0 < probe.threshold <= 1.0:
            raise MalformedRecordError(path, 1, "weights must be one row, threshold in (0, 1]")
        if not 0.0 < probe.threshold_for(rare_words=True) <= probe.threshold:
            raise MalformedRecordError(path, 1, "rare_threshold must be in (0, threshold]")
        return probe

    def save(self, path: Path) -> None:
        record = {
            "model_id": self.model_id,
            "threshold": round(self.threshold, 4),
            "rare_threshold": None
            if self.rare_threshold is None
            else round(self.rare_threshold, 4),
            "bias": round(self.bias, 6),
            "weights": [round(float(w), 6) for w in self.weights],
            "ngrams": None
            if self.ngrams is None
            else {
                "vocabulary": list(self.ngrams.vocabulary),
                "idf": [round(float(v), 5) for v in self.ngrams.idf],
                "weights": [round(float(w), 5) for w in self.ngrams.weights],
            },
            "coverage_weights": None
            if self.coverage_weights is None
            else [round(float(w), 6) for w in self.coverage_weights],
            "provenance": self.provenance,
        }
        path.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _read_ngrams(raw: dict[str, Any]) -> NgramWeights:
    """The n-gram half of a probe file; its three lists must be as long as each other."""
    vocabulary = tuple(str(g) for g in raw["vocabulary"])
    idf = np.asarray(raw["idf"], dtype=np.float32)
    weights = np.asarray(raw["weights"], dtype=np.float32)
    if not len(vocabulary) == len(idf) == len(weights) or len(set(vocabulary)) != len(vocabulary):
        raise ValueError("ngrams: vocabulary, idf and weights must be as long, n-grams unique")
    return NgramWeights(vocabulary, idf, weights)


def load_probe(path: Path | None, *, required: bool = False) -> ScopeProbe | None:
    """The probe at ``path``, or ``None`` when there is none (no path, or no file where one is
    not ``required``): the scope check then rests on unknown names and relevance scores alone.
    A probe the settings name (``required``) must be there."""
    if path is None or not path.is_file():
        if required:
            raise UnreadableFileError(path or "", 0, "no scope probe file here")
        if path is not None:
            log.warning("no scope probe at %s: aspect questions are not checked", path)
        return None
    return ScopeProbe.load(path)


def probe_text(question: Question, glossary: Glossary) -> str:
    """What the probe reads: the question masked (``masked_question``), after the asker's
    previous turn when it follows one ("And in atypical carcinoids?" asks what that turn asked)."""
    earlier = [turn.content for turn in question.history if turn.role == "user"][-1:]
    return "\n".join(masked_question(text, glossary) for text in [*earlier, question.text])


def masked_question(question: str, glossary: Glossary) -> str:
    """``question`` with each glossary term it names replaced by the term's type in capitals
    (DRUG, TRIAL, DISEASE): what is asked, not about which drug."""
    text = unicodedata.normalize("NFKC", question)
    pieces, end = [], 0
    for start, stop, term in glossary.spans(question):
        if start < end or stop > len(text):
            continue  # a span of the lowercased text that no longer lines up (rare letters)
        pieces += [text[end:start], term.type.upper()]
        end = stop
    return "".join([*pieces, text[end:]])
