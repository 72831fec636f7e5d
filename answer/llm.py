"""The llm answer mode: the evidence first, then a chat model's brief restatement of it.

A 1.5B model restates a few given sentences well; code keeps citations, numbers and names right.
So the model sees only the few evidence sentences the sentence scorer selects (the extractive
mode's selection), in the question's language (the English renderings for an English
question), without citation markers, and writes plain sentences. ``ClaimChecker``
(``answer.claims``) aligns each sentence with the evidence sentence(s) it restates and the code
cites them ([n], or [§section]); a sentence that restates nothing, or fails a check (a number,
name or claim word its evidence lacks, a number bound to another endpoint or arm, "better"
where the evidence says worse, a dropped negation, a placeholder), is removed and listed in
``Answer.unsupported``.

Evidence first: the verified extractive answer is sent at once (``AnswerPiece.quoted``), before
the model is asked; the synthesized sentences follow as they are checked. Never worse than
extractive: a quoted sentence whose facts (numbers) the kept sentences lost is kept as quoted
after them, and when every sentence was removed the answer is the quotes, not an abstention.
The same relevance gate as the extractive mode runs before the model is called, so an
out-of-scope question never reaches it. ``stream`` is the one pipeline: a non-streamed answer
drains it, calling the model once for the whole text instead of token by token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
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
    not_discussed_text,
)
from answer.citations import (
    FOREIGN_MARKER,
    KEY_MARKER,
    DraftSentenceSplitter,
    QuotedSentence,
    cite,
    collect_citations,
    render_quote,
    split_draft,
)
from answer.claims import Aligned, ClaimChecker, ClaimWordCheck, NamedTermCheck, evidence_texts
from answer.extractive import ExtractiveAnswerer
from answer.relevance import SentenceScorer, abstention
from nenqa.prompt_files import PROMPTS_DIR, load_prompt
from nenqa.settings import Settings
from nenqa.text import numbers_in, plain_latex, strip_citation_markers
from nenqa.timing import elapsed_ms
from nenqa.types import Answer, AnswerPiece, Question, Reference, TrialRecord

__all__ = ["ClaimWordCheck", "LLMAnswerer", "NamedTermCheck", "build_answer_prompt"]

ABSTAIN_TOKEN = "INSUFFICIENT_EVIDENCE"
LANGUAGE_NAMES = {
    "zh": "Chinese (简体中文)",
    "en": "English (write no Chinese characters)",
}
MAX_HISTORY_TURNS = 6
MAX_TURN_CHARS = 600
# Between the quoted answer and the synthesized one, where a client shows both as one text.
QUOTED_SEPARATOR = "\n\n"


def evidence_lines(shown: Sequence[QuotedSentence]) -> str:
    """The evidence as the model reads it: one sentence a line, in the answer's language,
    without citation markers or extraction residue (so it has nothing to copy as a citation)."""
    return "\n".join(f"- {_plain(q.rendering or q.sentence.text)}" for q in shown)


def _plain(text: str) -> str:
    """A review sentence without its citation markers and extraction residue (``$``, ``\\geq``)."""
    return " ".join(plain_latex(strip_citation_markers(text)).split())


def with_quotes(answer: Answer) -> Answer:
    """The llm answer as one text a chat client shows: the quoted answer, then the synthesized
    one, with the citations of both (``answer`` itself when nothing was quoted first)."""
    quoted = answer.quoted
    if quoted is None:
        return answer
    citations = {c.ref: c for c in quoted.citations}
    for citation in answer.citations:
        if citation.ref in citations:
            known = citations[citation.ref]
            quotes = (*known.quotes, *(q for q in citation.quotes if q not in known.quotes))
            citations[citation.ref] = replace(known, quotes=quotes)
        else:
            citations[citation.ref] = citation
    passages = {p.section: p for p in quoted.passages}
    for passage in answer.passages:
        known_passage = passages.get(passage.section)
        if known_passage is None:
            passages[passage.section] = passage
        else:
            extra = tuple(q for q in passage.quotes if q not in known_passage.quotes)
            passages[passage.section] = replace(
                known_passage, quotes=(*known_passage.quotes, *extra)
            )
    return replace(
        answer,
        text=f"{quoted.text}{QUOTED_SEPARATOR}{answer.text}",
        segments=(*quoted.segments, QUOTED_SEPARATOR, *answer.segments),
        citations=tuple(citations.values()),
        passages=tuple(passages.values()),
    )


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
    """Answers with the quotes first, then a chat model's checked restatement (module doc)."""

    name = "llm"

    def __init__(
        self,
        scorer: SentenceScorer,
        references: Mapping[int, Reference],
        chat_model: BaseChatModel,
        *,
        top_k: int = 6,
        prompt: ChatPromptTemplate | None = None,
        records: Iterable[TrialRecord] = (),
    ) -> None:
        self.scorer = scorer
        self.searcher = scorer.searcher
        self.references = references
        self.top_k = top_k
        self.extractive = ExtractiveAnswerer(self.searcher, scorer, references, top_k=top_k)
        self.checker = ClaimChecker(getattr(self.searcher, "glossary", None), records)
        self.prompt = prompt or build_answer_prompt()
        self.generate: Runnable = self.prompt | chat_model | StrOutputParser()

    def prompt_inputs(self, question: Question, shown: Sequence[QuotedSentence]) -> dict[str, str]:
        """The user message's variables: the shown evidence, the conversation, the question."""
        return {
            "evidence": evidence_lines(shown),
            "history": format_history(question),
            "question": question.text,
            "language": LANGUAGE_NAMES[answer_language(question)],
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
        """The quoted answer at once, checked sentences as the model writes them, then the
        complete ``Answer``.

        Raises ``LLMEndpointError`` when the endpoint fails (after the quoted answer was sent).
        """
        started = time.perf_counter()
        language = answer_language(question)
        retrieval = self.searcher.retrieve(question, question.top_k or self.top_k)
        evidence = retrieval.evidence
        timings = {"retrieve": elapsed_ms(started)}
        relevance = self.scorer.relevance(retrieval)
        if not relevance.answerable(self.scorer.config) or not evidence:
            timings["total"] = elapsed_ms(started)
            answer = abstention(
                language,
                "llm",
                evidence,
                timings,
                not_covered=relevance.not_covered,
                uncovered=relevance.uncovered,
            )
            yield AnswerPiece(text=answer.text)
            yield AnswerPiece(answer=answer)
            return
        quoted = self.extractive.quote(retrieval, relevance)
        timings["first_content"] = elapsed_ms(started)
        yield AnswerPiece(quoted=quoted)
        shown = [q.shown_in(language) for q in self.extractive.select(relevance)]
        inputs = self.prompt_inputs(question, shown)
        splitter = DraftSentenceSplitter()
        checked: list[Aligned] = []
        raw: list[str] = []
        generated = time.perf_counter()
        try:
            chunks = self.generate.stream(inputs) if incremental else [self.draft(inputs)]
            for chunk in chunks:
                if chunk and "first_token" not in timings:
                    timings["first_token"] = elapsed_ms(started)
                raw.append(chunk)
                for sentence in splitter.feed(chunk):
                    yield from self._accept(sentence, shown, checked, language)
            for sentence in splitter.flush():
                yield from self._accept(sentence, shown, checked, language)
        except openai.APIError as error:
            raise endpoint_error(error) from error
        timings["generate"] = elapsed_ms(generated)
        restored = self.lost_quotes(shown, checked)
        first = not any(c.supported for c in checked)
        for index, quote in enumerate(restored):
            yield AnswerPiece(text=_spaced(self._render(quote), first and index == 0, language))
        # Answered in part: what the review does not discuss is named, as in the quoted answer.
        unknown = relevance.unknown_entities
        spaced = _spaced(not_discussed_text(language, unknown), False, language) if unknown else ""
        if spaced and (restored or not first):
            yield AnswerPiece(text=spaced)
        timings["total"] = elapsed_ms(started)
        finished = self.finish(language, quoted, checked, restored, timings, "".join(raw))
        if spaced and not finished.abstained:
            finished = replace(
                finished, text=finished.text + spaced, segments=(*finished.segments, spaced)
            )
        yield AnswerPiece(answer=finished)

    def check_draft(self, draft: str, shown: Sequence[QuotedSentence]) -> list[Aligned]:
        """Every sentence of a complete model answer, aligned and checked (abstain token out)."""
        return [self.check_sentence(s, shown) for s in split_draft(draft) if is_statement(s)]

    def check_sentence(self, sentence: str, shown: Sequence[QuotedSentence]) -> Aligned:
        """One model sentence, markers it typed removed, aligned with ``shown`` and checked."""
        claim = FOREIGN_MARKER.sub("", KEY_MARKER.sub("", sentence))
        claim = re.sub(r"[ \t]+(?=[。，；！？.,;!?])", "", " ".join(claim.split()))
        return self.checker.align(claim, shown)

    def lost_quotes(
        self, shown: Sequence[QuotedSentence], checked: Sequence[Aligned]
    ) -> list[QuotedSentence]:
        """The quoted sentences whose facts the kept sentences would lose, in reading order (the
        quotes answered the question; a shorter answer must not drop them): those no kept
        sentence restates, and those whose numbers the sentences citing them do not all carry
        ("77% [46]" for a sentence giving 61 patients and a 77% response keeps the quote)."""
        said: dict[QuotedSentence, set] = {}
        for result in checked:
            if result.supported:
                for quote in result.cited:
                    said.setdefault(quote, set()).update(numbers_in(result.claim))
        return [
            quote
            for quote in shown
            if quote not in said or not numbers_in(evidence_texts(quote)[0]) <= said[quote]
        ]

    def _render(self, quote: QuotedSentence) -> str:
        return render_quote(quote.sentence, self.references, rendering=quote.rendering)

    def _accept(
        self,
        sentence: str,
        shown: Sequence[QuotedSentence],
        checked: list[Aligned],
        language: str,
    ) -> Iterator[AnswerPiece]:
        if not is_statement(sentence):
            return
        result = self.check_sentence(sentence, shown)
        checked.append(result)
        if result.supported:
            first = sum(c.supported for c in checked) == 1
            yield AnswerPiece(text=_spaced(cite(result.claim, result.cited), first, language))

    def finish(
        self,
        language: str,
        quoted: Answer,
        checked: Sequence[Aligned],
        restored: Sequence[QuotedSentence],
        timings: dict[str, float],
        draft: str = "",
    ) -> Answer:
        """The answer: kept sentences cited, then the restored quotes; failed ones (with why)
        in ``unsupported``. ``draft`` is the model's raw output, kept for inspection."""
        kept = [c for c in checked if c.supported]
        texts = [cite(c.claim, c.cited) for c in kept]
        texts += [self._render(q) for q in restored]
        unsupported = tuple(f"{c.claim} ({c.problem})" for c in checked if not c.supported)
        if not texts:  # nothing shown to the model, nothing kept
            return abstention(language, "llm", quoted.evidence, timings, unsupported=unsupported)
        segments = [_spaced(t, i == 0, language) for i, t in enumerate(texts)]
        cited = [*(q for c in kept for q in c.cited), *restored]
        citations, passages = collect_citations(
            list(dict.fromkeys(cited)), self.references, self.scorer.bank.entries_in(language)
        )
        return Answer(
            text="".join(segments),
            abstained=False,
            mode="llm",
            language=language,
            segments=tuple(segments),
            citations=citations,
            passages=passages,
            evidence=quoted.evidence,
            unsupported=unsupported,
            timings_ms=timings,
            draft=draft,
            quoted=quoted,
        )


def is_statement(sentence: str) -> bool:
    """False for what is not a sentence of the answer: the abstain token, or keys alone."""
    if ABSTAIN_TOKEN in sentence:
        return False
    return bool(re.search(r"\w", FOREIGN_MARKER.sub("", KEY_MARKER.sub("", sentence))))


def _spaced(text: str, first: bool, language: str) -> str:
    """Chinese sentences join directly; English ones with a space."""
    return text if first or language == "zh" else f" {text}"
