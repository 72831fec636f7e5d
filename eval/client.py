"""Asking the chat API the set's questions: ``ChatClient`` posts to ``/v1/chat``.

A deployment is asked over HTTP (``ChatClient.over_http``); an in-process run hands in any
client with ``post(path, json=...)`` (the entry point wraps the API's own ASGI app, so both go
through the same endpoint). ``parse_chat_response`` reads a body as a ``ChatReply``, with the
quotes it shows in translation (citation and passage quotes that carry an ``original``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eval.metrics import QuotedRendering
from eval.qa_schema import QAItem
from nenqa.timing import elapsed_ms


@dataclass
class ChatReply:
    """One ``/v1/chat`` response as the evaluation reads it (``error`` when the request failed)."""

    answer: str
    abstained: bool
    evidence: list[dict]
    citations: list[dict]
    mode: str
    ms: float
    error: str | None = None
    renderings: list[QuotedRendering] = field(default_factory=list)


AskFunction = Callable[[QAItem], ChatReply]


class ChatClient:
    """Posts the set's questions to ``/v1/chat``: a deployment's over HTTP, or the API's own
    ASGI app in this process, so both runs go through the same endpoint.

    ``service`` is the loaded chat service behind an in-process client (the tutorial recipe
    reuses its searcher, model and thresholds); ``None`` for a deployment.
    """

    def __init__(
        self, client: Any, *, mode: str | None, where: str, closer=None, service: Any = None
    ) -> None:
        self.client = client
        self.mode = mode
        self.where = where
        self.service = service
        self._closer = closer

    @classmethod
    def over_http(
        cls, url: str, *, mode: str | None, timeout_s: float = 120.0, api_key: str | None = None
    ) -> ChatClient:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=headers)
        return cls(client, mode=mode, where=url, closer=client.close)

    def ask(self, item: QAItem) -> ChatReply:
        body: dict[str, Any] = {
            "question": item.question,
            "history": [turn.model_dump() for turn in item.history],
        }
        if self.mode:
            body["mode"] = self.mode
        started = time.perf_counter()
        try:
            response = self.client.post("/v1/chat", json=body)
        except Exception as error:  # a network failure is one failed item, reported as such
            return _failed(f"POST /v1/chat failed: {error}", started)
        if response.status_code != 200:
            return _failed(
                f"POST /v1/chat answered {response.status_code}: {response.text[:300]}", started
            )
        return parse_chat_response(response.json(), elapsed_ms(started, digits=1))

    def close(self) -> None:
        if self._closer is not None:
            self._closer()


def parse_chat_response(data: object, ms: float) -> ChatReply:
    """A ``/v1/chat`` body as a ``ChatReply``; a body without the documented fields is an error."""
    if not isinstance(data, dict):
        return ChatReply("", False, [], [], "", ms, "the response is not a JSON object")
    problems = [
        f"{key!r} missing or not {kind.__name__}"
        for key, kind in (("answer", str), ("abstained", bool), ("evidence", list))
        if not isinstance(data.get(key), kind)
    ]
    if problems:
        return ChatReply("", False, [], [], "", ms, "bad response: " + "; ".join(problems))
    citations = [c for c in data.get("citations", []) if isinstance(c, dict)]
    passages = [p for p in data.get("passages", []) if isinstance(p, dict)]
    return ChatReply(
        answer=data["answer"],
        abstained=data["abstained"],
        evidence=[e for e in data["evidence"] if isinstance(e, dict)],
        citations=citations,
        mode=str(data.get("mode", "")),
        ms=ms,
        renderings=quoted_renderings([*citations, *passages]),
    )


def quoted_renderings(cited: list[dict]) -> list[QuotedRendering]:
    """The quotes of citations and passage citations that are renderings (``original`` set),
    each once."""
    found: dict[tuple[str, str], QuotedRendering] = {}
    for citation in cited:
        quotes = citation.get("quotes")
        for quote in quotes if isinstance(quotes, list) else ():
            if not isinstance(quote, dict):
                continue
            text, original = quote.get("text"), quote.get("original")
            if isinstance(text, str) and isinstance(original, str) and original.strip():
                found.setdefault((text, original), QuotedRendering(text, original))
    return list(found.values())


def _failed(message: str, started: float) -> ChatReply:
    return ChatReply("", False, [], [], "", elapsed_ms(started, digits=1), message)
