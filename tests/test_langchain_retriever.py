"""The LangChain face of the retriever passes LangChain's standard retriever test suite."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from retriever.langchain import NenqaRetriever

pytestmark = pytest.mark.slow


class TestNenqaRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _searcher(self, searcher):
        type(self)._shared_searcher = searcher

    @property
    def retriever_constructor(self) -> type[NenqaRetriever]:
        return NenqaRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"searcher": type(self)._shared_searcher}

    @property
    def retriever_query_example(self) -> str:
        return "SPINET 兰瑞肽 肺类癌"


def test_documents_carry_the_reviews_reference_numbers(searcher):
    docs = NenqaRetriever(searcher=searcher, k=3).invoke("CLARINET FORTE 兰瑞肽增量")
    assert docs[0].metadata["refs"] == [8]
    assert {"chunk_id", "refs", "score", "section", "kind"} <= set(docs[0].metadata)


def test_history_is_passed_through(searcher):
    history = [
        {"role": "user", "content": "What did the TALENT trial report for lenvatinib?"},
        {"role": "assistant", "content": "ORR 40.4% in the pancreatic cohort [17]."},
    ]
    retriever = NenqaRetriever(searcher=searcher, k=3)
    alone = retriever.invoke("and the median PFS?")
    followed = retriever.invoke("and the median PFS?", history=history)
    assert 17 not in {r for d in alone for r in d.metadata["refs"]}
    assert 17 in {r for d in followed for r in d.metadata["refs"]}
