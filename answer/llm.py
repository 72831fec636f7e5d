"""The llm answer mode: an OpenAI-compatible chat model writes, the code checks every sentence.

The model sees the sentences of the retrieved evidence under opaque keys (``[S1]`` ...), with
the review's own citation markers removed, so the only citations it can write are keys. Each
sentence it writes goes through ``check_draft_sentence``: keys become the review's reference
numbers (or ``[§section]``), keys it was never given and numbers it typed itself are dropped, and
a sentence citing nothing, or stating a number its cited evidence does not contain, is removed
from the answer and listed in ``Answer.unsupported``; so is one naming a drug, trial or endpoint
(``NamedTermCheck``) or making a claim such as "cures" (``ClaimWordCheck``) that its cited
evidence does not. The same relevance gate as the extractive
mode (``answer.relevance``, computed once per answer) runs before the model is called, so an
out-of-scope question never reaches it. ``stream`` is the one pipeline: a non-streamed answer
drains it, calling the model once for the whole text instead of token by token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

from answer.base import (
    LLMEndpointError,
    LLMTimeoutError,
    LLMUnavailableError,
    answer_language,
    final_answer,
)
from answer.citations import (
    FOREIGN_MARKER,
    KEY_MARKER,
    CheckedSentence,
    DraftSentenceSplitter,
    QuotedSentence,
    check_draft_sentence,
    collect_citations,
    split_draft,
)
from answer.relevance import Relevance, ScoredSentence, SentenceScorer, abstention
from nenqa.glossary import Glossary, Term
from nenqa.prompt_files import PROMPTS_DIR, load_prompt
from nenqa.settings import Settings
from nenqa.text import strip_citation_markers
from nenqa.timing import elapsed_ms
from nenqa.types import Answer, AnswerPiece, Chunk, Evidence, Question, Reference

ABSTAIN_TOKEN = "INSUFFICIENT_EVIDENCE"
LANGUAGE_NAMES = {
    "zh": "Chinese (简体中文)",
    "en": "English (translate the Chinese evidence; write no Chinese characters)",
}
# Evidence sentences shown to the model, best first; tuned on eval/qa.jsonl with the local
# 1.5B model (a longer list costs prompt time and made it cite the wrong key more often).
MAX_KEYED_SENTENCES = 8
MAX_HISTORY_TURNS = 6
MAX_TURN_CHARS = 600


@dataclass(frozen=True)
class KeyedEvidence:
    """The evidence as the model sees it (``text``) and what each key stands for."""

    text: str
    keys: Mapping[str, QuotedSentence]


def key_evidence(
    evidence: Sequence[Evidence],
    scorer: SentenceScorer,
    limit: int = MAX_KEYED_SENTENCES,
    ranked: Sequence[ScoredSentence] | None = None,
) -> KeyedEvidence:
    """Number the evidence sentences the model sees ``S1..Sn``, in reading order.

    With ``ranked`` (the scorer's sentences, best first) the ``limit`` best are shown, each one
    without a reference marker preceded by the sentence before it in its chunk (that sentence
    usually names the study a "结果显示…" reports on); without it, the first ``limit``
    sentences in retrieval order. Markers such as ``^[7]`` are removed from what the model sees,
    so it cannot copy a review number; the code puts the numbers back from the keys.
    """
    bank = scorer.bank
    chunk_of: dict[int, Chunk] = {}
    for item in evidence:
        for index in bank.sentences_of(item.chunk.chunk_id):
            chunk_of.setdefault(index, item.chunk)
    if ranked is None:
        chosen = list(chunk_of)[:limit]
    else:
        best = list(dict.fromkeys(s.index for s in ranked if s.index in chunk_of))[:limit]
        chosen = [*best]
        for index in best:
            in_chunk = bank.sentences_of(chunk_of[index].chunk_id)
            position = in_chunk.index(index)
            if not bank.sentences[index].refs and position > 0:
                lead = in_chunk[position - 1]
                if lead not in chosen:
                    chosen.append(lead)
        chosen.sort(key=lambda i: (bank.sentences[i].position, i))
    keys: dict[str, QuotedSentence] = {}
    lines = []
    for index in chosen:
        key = f"S{len(keys) + 1}"
        keys[key] = QuotedSentence(bank.sentences[index], bank.quote_chunk(index, chunk_of[index]))
        lines.append(f"{_plain(bank.sentences[index].text)} [{key}]")
    return KeyedEvidence("\n".join(lines), keys)


def _plain(text: str) -> str:
    """A review sentence without its citation markers and extraction residue (``$``, ``\\geq``)."""
    text = strip_citation_markers(text).replace("$", "")
    text = text.replace("\\geq", "≥").replace("\\leq", "≤")
    return " ".join(text.split())


class NamedTermCheck:
    """A sentence may name a drug, regimen, trial or endpoint only if its cited evidence does.

    Terms are the glossary's (``data/glossary.tsv``: Chinese, English and abbreviated forms of
    one concept), so an English sentence is checked against Chinese evidence. Two terms count as
    the same when a form of one contains a form of the other (``PFS`` in ``mPFS``, ``兰瑞肽`` in
    ``长效兰瑞肽``). This catches what the number check cannot: a right number given to the
    wrong drug or trial, or a claim about an endpoint the evidence never reports.
    """

    types = frozenset({"drug", "regimen", "trial", "endpoint"})

    def __init__(self, glossary: Glossary) -> None:
        self.glossary = glossary

    def missing(self, claim: str, cited_texts: Sequence[str]) -> list[str]:
        """The checked terms ``claim`` names that no cited text names, as the claim writes them."""
        named = [t for t in self.glossary.matches(claim) if t.type in self.types]
        if not named:
            return []
        present = self.glossary.matches(" ".join(cited_texts))
        return [
            _shown_form(term, claim)
            for term in named
            if not any(_same_concept(term, other) for other in present)
        ]


# Claims stronger than trial results usually are, in both languages (each tuple one concept:
# Chinese forms, English forms). A sentence may make one only if its cited evidence does.
_CLAIM_CONCEPTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("治愈", "根治", "痊愈"), ("cure", "cures", "cured", "curing", "curative")),
    (("翻倍", "一倍", "两倍"), ("double", "doubles", "doubled", "doubling", "twofold", "two-fold")),
    (("消除", "根除"), ("eradicate", "eradicates", "eradicated", "eliminates", "eliminated")),
    (("保证", "确保"), ("guarantee", "guarantees", "guaranteed")),
    (("所有患者", "全部患者", "每位患者"), ("all patients", "every patient")),
    (("最有效", "最佳疗效"), ("most effective", "best treatment")),
)


class ClaimWordCheck:
    """A sentence may say a drug cures, doubles, eradicates ... only if its cited evidence does.

    The named-term and number checks pass "舒尼替尼可以治愈NEC。[S3]" when S3 names sunitinib and
    the sentence has no number; the 1.5B model wrote exactly that when a question told it to
    (docs/benchmarks.md, "Prompt tuning"). The concepts are few and bilingual, so an English
    "cures" is checked against Chinese evidence (治愈/根治/痊愈).
    """

    def __init__(self) -> None:
        self.concepts = Glossary(Term(zh, en, (), "claim") for zh, en in _CLAIM_CONCEPTS)

    def unsupported(self, claim: str, cited_texts: Sequence[str]) -> list[str]:
        """The claim words of ``claim`` that no cited text makes, as the claim writes them."""
        made = self.concepts.matches(claim)
        if not made:
            return []
        present = self.concepts.matches(" ".join(cited_texts))
        return [_shown_form(term, claim) for term in made if term not in present]


def _same_concept(term: Term, other: Term) -> bool:
    if term == other:
        return True
    return any(_contains(a, b) or _contains(b, a) for a in term.forms for b in other.forms)


def _contains(outer: str, inner: str) -> bool:
    # Short forms are abbreviations: case matters ("OS" is in "mOS", not in "etoposide").
    if len(inner) <= 4:
        return inner in outer
    return inner.casefold() in outer.casefold()


def _shown_form(term: Term, claim: str) -> str:
    """The longest form of ``term`` the claim contains ("cures", not "cure")."""
    folded = claim.casefold()
    return max((f for f in term.forms if f.casefold() in folded), key=len, default=term.forms[0])


def format_history(question: Question) -> str:
    """The earlier turns as plain lines (data for the model, never instructions).

    Citation markers are removed so the model does not copy ``[7]`` from an earlier answer.
    """
    turns = [t for t in question.history if t.role in {"user", "assistant"}]
    lines = [
        f"{t.role}: {' '.join(FOREIGN_MARKER.sub('', t.content).split())[:MAX_TURN_CHARS]}"
        for t in turns[-MAX_HISTORY_TURNS:]
    ]
    return "\n".join(lines) or "(none)"


def build_answer_prompt(directory: Path = PROMPTS_DIR) -> ChatPromptTemplate:
    """System and user messages from ``answer_system.md`` and ``answer_user.md`` in ``directory``
    (default ``prompts/``; another folder holds a variant under test, benchmarks/bench_llm.py)."""
    system = load_prompt("answer_system.md", directory)
    user = load_prompt("answer_user.md", directory)
    prompt = ChatPromptTemplate.from_messages(
        [("system", system.template), ("human", user.template)]
    )
    return prompt.partial(abstain_token=ABSTAIN_TOKEN)


def make_chat_model(settings: Settings) -> BaseChatModel:
    """A ``ChatOpenAI`` for the configured endpoint; raises ``LLMUnavailableError`` if unset."""
    if not settings.llm_base_url:
        raise LLMUnavailableError(
            "the llm mode needs an OpenAI-compatible endpoint: set NENQA_LLM_BASE_URL "
            "(and NENQA_LLM_MODEL, NENQA_LLM_API_KEY)"
        )
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=settings.llm_api_key,
        temperature=0,
        max_tokens=settings.llm_max_tokens,
        timeout=settings.llm_timeout_s,
        max_retries=1,
    )


def endpoint_error(error: openai.APIError) -> LLMEndpointError:
    """The domain error for a failed call: ``LLMTimeoutError`` for a timeout, else the base."""
    if isinstance(error, openai.APITimeoutError):
        return LLMTimeoutError(
            f"the LLM endpoint did not answer in time ({type(error).__name__}: {error}); "
            "check the endpoint or raise NENQA_LLM_TIMEOUT_S"
        )
    return LLMEndpointError(f"the LLM endpoint did not answer ({type(error).__name__}: {error})")


class LLMAnswerer:
    """Answers with a chat model over keyed evidence; see the module docstring for the checks."""

    name = "llm"

    def __init__(
        self,
        scorer: SentenceScorer,
        references: Mapping[int, Reference],
        chat_model: BaseChatModel,
        *,
        top_k: int = 6,
        prompt: ChatPromptTemplate | None = None,
        max_evidence_sentences: int = MAX_KEYED_SENTENCES,
    ) -> None:
        self.scorer = scorer
        self.searcher = scorer.searcher
        self.references = references
        self.top_k = top_k
        self.max_evidence_sentences = max_evidence_sentences
        glossary = getattr(self.searcher, "glossary", None)
        self.term_check = NamedTermCheck(glossary) if glossary is not None else None
        self.claim_check = ClaimWordCheck()
        self.prompt = prompt or build_answer_prompt()
        self.generate: Runnable = self.prompt | chat_model | StrOutputParser()

    def keyed_evidence(self, evidence: Sequence[Evidence], relevance: Relevance) -> KeyedEvidence:
        """The most relevant sentences of ``evidence`` under the keys the model may cite."""
        return key_evidence(
            evidence, self.scorer, self.max_evidence_sentences, ranked=relevance.ranked
        )

    def prompt_inputs(self, question: Question, keyed: KeyedEvidence) -> dict[str, str]:
        language = answer_language(question)
        return {
            "evidence": keyed.text,
            "history": format_history(question),
            "question": question.text,
            "language": LANGUAGE_NAMES[language],
        }

    def draft(self, inputs: Mapping[str, str]) -> str:
        """The model's raw answer for prompt inputs; raises ``LLMEndpointError`` on failure."""
        try:
            return self.generate.invoke(dict(inputs))
        except openai.APIError as error:
            raise endpoint_error(error) from error

    def answer(self, question: Question) -> Answer:
        """The checked answer: ``stream`` drained, the model called once for the whole text."""
        return final_answer(self.stream(question, incremental=False))

    def stream(self, question: Question, *, incremental: bool = True) -> Iterator[AnswerPiece]:
        """Checked sentences as the model writes them, then the complete ``Answer``.

        Raises ``LLMEndpointError`` when the endpoint fails; with ``incremental=False`` that
        happens before the first piece, since the model is asked for its whole answer at once.
        """
        started = time.perf_counter()
        language = answer_language(question)
        retrieval = self.searcher.retrieve(question, question.top_k or self.top_k)
        evidence = retrieval.evidence
        timings = {"retrieve": elapsed_ms(started)}
        relevance = self.scorer.relevance(retrieval)
        if not relevance.answerable(self.scorer.config) or not evidence:
            timings["total"] = elapsed_ms(started)
            answer = abstention(language, "llm", evidence, timings)
            yield AnswerPiece(text=answer.text)
            yield AnswerPiece(answer=answer)
            return
        keyed = self.keyed_evidence(evidence, relevance)
        inputs = self.prompt_inputs(question, keyed)
        splitter = DraftSentenceSplitter()
        checked: list[CheckedSentence] = []
        raw: list[str] = []
        generated = time.perf_counter()
        try:
            chunks = self.generate.stream(inputs) if incremental else [self.draft(inputs)]
            for chunk in chunks:
                if chunk and "first_token" not in timings:
                    timings["first_token"] = elapsed_ms(started)
                raw.append(chunk)
                for sentence in splitter.feed(chunk):
                    yield from self._accept(sentence, keyed, checked, language)
            for sentence in splitter.flush():
                yield from self._accept(sentence, keyed, checked, language)
        except openai.APIError as error:
            raise endpoint_error(error) from error
        timings["generate"] = elapsed_ms(generated)
        timings["total"] = elapsed_ms(started)
        answer = self.finish(language, evidence, checked, timings, draft="".join(raw))
        if answer.abstained:
            yield AnswerPiece(text=answer.text)
        yield AnswerPiece(answer=answer)

    def check_draft(self, draft: str, keyed: KeyedEvidence) -> list[CheckedSentence]:
        """Every sentence of a complete model answer, checked (the abstain token left out)."""
        return [
            self.check_sentence(sentence, keyed)
            for sentence in split_draft(draft)
            if is_statement(sentence)
        ]

    def check_sentence(self, sentence: str, keyed: KeyedEvidence) -> CheckedSentence:
        """``check_draft_sentence`` (keys, numbers), then the named-term and claim-word checks."""
        result = check_draft_sentence(" ".join(sentence.split()), keyed.keys)
        if not result.supported:
            return result
        cited = [strip_citation_markers(q.sentence.text) for q in result.cited]
        claim = FOREIGN_MARKER.sub("", KEY_MARKER.sub("", result.draft))
        if self.term_check is not None and (missing := self.term_check.missing(claim, cited)):
            reason = f"names what its cited evidence does not: {', '.join(missing)}"
            return replace(result, supported=False, reason=reason)
        if overclaims := self.claim_check.unsupported(claim, cited):
            reason = f"claims what its cited evidence does not: {', '.join(overclaims)}"
            return replace(result, supported=False, reason=reason)
        return result

    def _accept(
        self,
        sentence: str,
        keyed: KeyedEvidence,
        checked: list[CheckedSentence],
        language: str,
    ) -> Iterator[AnswerPiece]:
        if not is_statement(sentence):
            return
        result = self.check_sentence(sentence, keyed)
        checked.append(result)
        if result.supported:
            first = sum(c.supported for c in checked) == 1
            yield AnswerPiece(text=_spaced(result.text, first, language))

    def finish(
        self,
        language: str,
        evidence: Sequence[Evidence],
        checked: Sequence[CheckedSentence],
        timings: dict[str, float],
        draft: str = "",
    ) -> Answer:
        """The answer from checked sentences: kept ones cited, failed ones in ``unsupported``.

        ``draft`` is the model's raw output, kept on the answer for inspection.
        """
        kept = [c for c in checked if c.supported]
        unsupported = tuple(c.draft for c in checked if not c.supported)
        if not kept:
            return abstention(
                language, "llm", evidence, timings, unsupported=unsupported, draft=draft
            )
        segments = [_spaced(c.text, i == 0, language) for i, c in enumerate(kept)]
        # The model writes in the answer's language; its citations show the evidence so too,
        # each rendering with the sentence as printed beside it.
        quoted = [q.shown_in(language) for q in dict.fromkeys(q for c in kept for q in c.cited)]
        citations, passages = collect_citations(
            quoted, self.references, self.scorer.bank.entries_in(language)
        )
        return Answer(
            text="".join(segments),
            abstained=False,
            mode="llm",
            language=language,
            segments=tuple(segments),
            citations=citations,
            passages=passages,
            evidence=tuple(evidence),
            unsupported=unsupported,
            timings_ms=timings,
            draft=draft,
        )


def is_statement(sentence: str) -> bool:
    """False for what is not a sentence of the answer: the abstain token, or keys alone."""
    if ABSTAIN_TOKEN in sentence:
        return False
    return bool(re.search(r"\w", FOREIGN_MARKER.sub("", KEY_MARKER.sub("", sentence))))


def _spaced(text: str, first: bool, language: str) -> str:
    """Chinese sentences join directly; English ones with a space."""
    return text if first or language == "zh" else f" {text}"
