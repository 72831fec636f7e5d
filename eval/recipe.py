"""The tutorial recipe as an answerer, the baseline ``nenqa eval`` compares with.

The recipe is what a user would otherwise build: LangChain's
``RecursiveCharacterTextSplitter(1000, 200)`` over the raw review and dense top 4 with the same
embedder (``eval.retrieval.tutorial_recipe``). Its answers are made by the same extractive
answer construction (same sentence scoring, same abstention thresholds) over its four chunks,
so the comparison measures what the ingest and the hybrid retrieval add.
"""

from __future__ import annotations

import time
from typing import Any

from eval.client import AskFunction, ChatReply
from eval.qa_schema import QAItem
from nenqa.settings import Settings
from nenqa.timing import elapsed_ms

RECIPE_K = 4
RECIPE_SECTION = "tutorial recipe"
# The retrieval metrics reported beside the recipe's answers (its cut-off is 4, not 5).
RECIPE_RETRIEVAL_METRICS = ("ref_recall@4", "fact_recall@4", "mrr@10", "ndcg@10")


def tutorial_recipe_answerer(settings: Settings, service: Any) -> AskFunction:
    """Answers from the tutorial recipe's top 4 chunks with the extractive answer construction.

    ``service`` is the loaded chat service (the one behind an in-process ``ChatClient``): its
    searcher, model, scope check, abstention thresholds and reference list are reused. The
    recipe's chunks are ``eval.retrieval.tutorial_recipe``'s; each becomes a passage whose refs
    are its ``^[n]`` markers; the recipe knows no sections, so a sentence without a marker is
    cited as ``[§tutorial recipe]`` (chunks overlap, and one sentence may sit in two).
    """
    from dataclasses import replace

    from answer.extractive import ExtractiveAnswerer
    from answer.relevance import SentenceScorer
    from answer.sentences import SentenceBank
    from eval.retrieval import tutorial_recipe
    from nenqa.types import Chunk, Evidence, Question, Turn

    searcher = service.searcher
    recipe, corpus = tutorial_recipe(settings, searcher.embedder)
    chunks = {
        hit.text: Chunk(
            chunk_id=f"recipe-{i:03d}",
            doc_id="tutorial-recipe",
            kind="passage",
            text=hit.text,
            section=RECIPE_SECTION,
            refs=tuple(sorted(hit.refs)),
        )
        for i, hit in enumerate(corpus)
    }
    bank = SentenceBank(searcher.embedder, list(chunks.values()))
    scorer = SentenceScorer(searcher, bank, service.scorer.scope, service.scorer.config)
    answerer = ExtractiveAnswerer(searcher, scorer, service.references, top_k=RECIPE_K)

    def ask(item: QAItem) -> ChatReply:
        started = time.perf_counter()
        hits = recipe(item)[:RECIPE_K]
        evidence = [Evidence(chunks[hit.text], 1.0 / (rank + 1)) for rank, hit in enumerate(hits)]
        history = tuple(Turn(t.role, t.content) for t in item.history)
        retrieval = searcher.prepare(Question(item.question, history))
        answer = answerer.answer_retrieval(replace(retrieval, evidence=tuple(evidence)))
        return ChatReply(
            answer=answer.text,
            abstained=answer.abstained,
            evidence=[e.as_json() for e in answer.evidence],
            citations=[],
            mode="tutorial-recipe",
            ms=elapsed_ms(started, digits=1),
        )

    return ask
