"""Does a question ask the kind of thing the review answers? A linear probe on its embedding.

The unknown-name check (``answer.scope``) catches a question naming what the corpus never
mentions. Many questions a clinician asks name only what the review knows and still ask about
something it never discusses: "How should mouth ulcers caused by everolimus be managed?",
"长效奥曲肽漏打了一针，要不要补打？", vaccines, diet, cost, monitoring, surgery decisions. The
evidence retrieved for them is about the right drug, so its scores look like an answer, and the
quotes would answer another question.

What such a question asks is in its wording around the names, so the probe reads the question
with every glossary term replaced by its type ("How should mouth ulcers caused by DRUG be
managed?"), embedded like a query, and a logistic regression on that vector gives the
probability that the review does not cover what is asked. Its weights are fit on the tune half
of the scope and eval sets only (``benchmarks/tune_scope.py probe``), with the threshold chosen
there by cross-validation, and saved in ``data/scope_probe.json`` beside the embedding model
they were fit for: under another embedding model the probe does not apply.
"""

from __future__ import annotations

import json
import logging
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nenqa.errors import MalformedRecordError, UnreadableFileError
from nenqa.glossary import Glossary
from nenqa.types import Question

log = logging.getLogger("nenqa.scope")

PROBE_FILE = "scope_probe.json"


@dataclass(frozen=True)
class ScopeProbe:
    """Logistic-regression weights over a masked question's query vector."""

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

    def applies_to(self, embedder: Any) -> bool:
        """Whether ``embedder`` is the model the weights were fit on (its vectors mean the same)."""
        return getattr(embedder, "model_id", None) == self.model_id

    def threshold_for(self, *, rare_words: bool) -> float:
        """The probability from which a question is out of scope, with or without rare words."""
        return (
            self.threshold if self.rare_threshold is None or not rare_words else self.rare_threshold
        )

    def probability(self, vector: np.ndarray) -> float:
        """The probability that the question of this masked query vector is out of scope."""
        logit = float(np.dot(self.weights, vector)) + self.bias
        return 1.0 / (1.0 + math.exp(-logit))

    def out_of_scope(self, question: Question, glossary: Glossary, embedder: Any) -> float | None:
        """The probability for ``question``, or ``None`` when the probe does not apply."""
        if not self.applies_to(embedder):
            return None
        vector = embedder.embed_queries([probe_text(question, glossary)])[0]
        return self.probability(vector)

    @classmethod
    def load(cls, path: Path) -> ScopeProbe:
        """Read a probe file; a malformed one is refused with its name and what is wrong."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            weights = np.asarray(raw["weights"], dtype=np.float32)
            probe = cls(
                model_id=str(raw["model_id"]),
                weights=weights,
                bias=float(raw["bias"]),
                threshold=float(raw["threshold"]),
                provenance=dict(raw.get("provenance", {})),
                rare_threshold=(
                    float(raw["rare_threshold"]) if raw.get("rare_threshold") is not None else None
                ),
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
            "provenance": self.provenance,
        }
        path.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


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
