"""Both answer modes as LangChain runnables, composed with LCEL.

``build_chain(answerer)`` gives a ``Runnable`` that takes ``{"question": str, "history":
[{"role", "content"}], "top_k": int | None}`` (or just the question string) and returns an
``Answer``. The extractive chain is retriever → sentence selection; the llm chain is retriever →
abstention gate → (prompt | chat model | text) → citation check. The HTTP layer invokes these;
a user can import them and compose further::

    chain = build_chain(state.answerers["extractive"])
    chain.invoke({"question": "SPINET研究中兰瑞肽组的TTF是多少？"}).text
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from langchain_core.runnables import (
    Runnable,
    RunnableBranch,
    RunnableLambda,
    RunnablePassthrough,
)

from answer.base import Answer, Question
from answer.extractive import ExtractiveAnswerer, abstention
from answer.llm import LLMAnswerer
from nenqa.text import detect_language
from nenqa.types import Evidence
from retriever.langchain import NenqaRetriever
from retriever.search import HybridSearcher, Turn


def as_question(value: Any) -> Question:
    """A ``Question`` from a string, a ``Question`` or a ``{"question", "history", "top_k"}``."""
    if isinstance(value, Question):
        return value
    if isinstance(value, str):
        return Question(value)
    history = tuple(
        t if isinstance(t, Turn) else Turn(t["role"], t["content"])
        for t in value.get("history") or ()
    )
    return Question(str(value["question"]), history, value.get("top_k"))


def retrieval_runnable(searcher: HybridSearcher, k: int) -> Runnable[dict, dict]:
    """``NenqaRetriever`` on ``inputs["question"]``; adds its documents, as evidence, to inputs.

    A plain sequence step rather than ``RunnablePassthrough.assign``, whose thread pool costs
    more than the retrieval's own bookkeeping.
    """
    retriever = NenqaRetriever(searcher=searcher, k=k)

    def retrieve(inputs: dict) -> dict:
        started = time.perf_counter()
        question: Question = inputs["question"]
        history = [{"role": t.role, "content": t.content} for t in question.history]
        documents = retriever.invoke(question.text, k=question.top_k or k, history=history)
        chunks, position = searcher.chunks, searcher.position
        evidence = [
            Evidence(chunks[position[d.metadata["chunk_id"]]], float(d.metadata["score"]))
            for d in documents
            if d.metadata["chunk_id"] in position
        ]
        inputs["timings"]["retrieve"] = _ms(started)
        return {**inputs, "evidence": evidence}

    return RunnableLambda(retrieve, name="retrieve")


def _start(value: Any) -> dict:
    # ``timings`` is shared by the dicts the steps pass on, so each step can add its own.
    return {"question": as_question(value), "timings": {}, "started": time.perf_counter()}


def _with_timings(answer: Answer, inputs: dict) -> Answer:
    timings = {**inputs["timings"], **answer.timings_ms, "total": _ms(inputs["started"])}
    return replace(answer, timings_ms=timings)


def build_extractive_chain(answerer: ExtractiveAnswerer) -> Runnable[Any, Answer]:
    """Retriever → sentence selection and citation (``ExtractiveAnswerer.answer_from_evidence``)."""
    retrieve = retrieval_runnable(answerer.searcher, answerer.top_k)

    def quote(x: dict) -> Answer:
        return _with_timings(answerer.answer_from_evidence(x["question"], x["evidence"]), x)

    return RunnableLambda(_start, name="question") | retrieve | RunnableLambda(quote, name="quote")


def build_llm_chain(answerer: LLMAnswerer) -> Runnable[Any, Answer]:
    """Retriever → abstention gate → prompt | chat model | text → citation check."""
    scorer = answerer.scorer
    retrieve = retrieval_runnable(answerer.searcher, answerer.top_k)

    def gate(x: dict) -> bool:
        relevance = scorer.relevance(x["question"], x["evidence"])
        return bool(x["evidence"]) and relevance.answerable(scorer.config)

    def abstain(x: dict) -> Answer:
        language = detect_language(x["question"].text)
        return _with_timings(abstention(language, "llm", x["evidence"], {}), x)

    def inputs(x: dict) -> dict:
        x["timings"]["generate_started"] = time.perf_counter()
        return answerer.prompt_inputs(x["question"], x["keyed"])

    def check(x: dict) -> Answer:
        timings = x["timings"]
        timings["generate"] = _ms(timings.pop("generate_started"))
        language = detect_language(x["question"].text)
        checked = answerer.check_draft(x["draft"], x["keyed"])
        answer = answerer.finish(language, x["evidence"], checked, {}, draft=x["draft"])
        return _with_timings(answer, x)

    generate = (
        RunnablePassthrough.assign(
            keyed=lambda x: answerer.keyed_evidence(x["question"], x["evidence"])
        )
        | RunnablePassthrough.assign(
            draft=RunnableLambda(inputs, name="prompt_inputs")
            | RunnableLambda(answerer.draft, name="prompt_model_text")
        )
        | RunnableLambda(check, name="check_citations")
    )
    return (
        RunnableLambda(_start, name="question")
        | retrieve
        | RunnableBranch((gate, generate), RunnableLambda(abstain, name="abstain"))
    )


def build_chain(answerer: Any) -> Runnable[Any, Answer]:
    """The LCEL chain of an answer mode."""
    if isinstance(answerer, ExtractiveAnswerer):
        return build_extractive_chain(answerer)
    if isinstance(answerer, LLMAnswerer):
        return build_llm_chain(answerer)
    raise TypeError(f"no chain for answer mode {type(answerer).__name__}")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
