"""The HTTP request and response models (pydantic), documented in the OpenAPI schema.

Every constraint a request must meet is in the schema itself (lengths, the non-blank question,
roles, modes), so any request the schema allows is answered. Limits: a question or message is
at most ``MAX_QUESTION_CHARS`` characters and contains a non-whitespace character; at most
``MAX_TURNS`` earlier turns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from answer.llm import with_quotes
from nenqa.types import TrialRecord

MAX_QUESTION_CHARS = 2000
MAX_TURNS = 16
MAX_TOP_K = 20
# Unicode White_Space, as JSON Schema regexes (and browsers) define ``\s``; Python's ``str.isspace``
# also counts U+001C..U+001F, which the schema's pattern would accept.
UNICODE_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
NOT_BLANK_PATTERN = f"[^{UNICODE_WHITESPACE}]"

ModeName = Literal["extractive", "llm"]
AnswerLanguage = Literal["zh", "en"]
LANG_DESCRIPTION = (
    "answer language: 'zh' or 'en'; default: the question's own (any Chinese character: zh, "
    'English words: en), for a question with neither ("SPINET?") the last user turn\'s'
)


def _whole_number(value: object) -> object:
    # JSON Schema counts 3.0 as an integer; strict pydantic would not (and must refuse true).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _not_boolean(value: object) -> object:
    # Python's True == 1, so Literal[1] would accept JSON true; the schema says integer.
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
AnswerTopK = Annotated[int, Field(ge=1, le=MAX_TOP_K), BeforeValidator(_whole_number)]
TokenCount = Annotated[int, Field(ge=1), BeforeValidator(_whole_number)]


def _not_blank(value: str) -> str:
    if not value.strip(UNICODE_WHITESPACE):
        raise ValueError("must contain text; it is empty or only whitespace")
    # Lone surrogates can arrive through JSON escapes; no model can encode them.
    return value.encode("utf-8", "replace").decode("utf-8")


QuestionText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_QUESTION_CHARS,
        json_schema_extra={"pattern": NOT_BLANK_PATTERN},
        description=f"a question in Chinese or English, 1-{MAX_QUESTION_CHARS} characters",
    ),
    AfterValidator(_not_blank),
]


class ChatTurn(BaseModel):
    """One earlier turn of the conversation."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["user", "assistant"] = Field(description="who said it: 'user' or 'assistant'")
    content: QuestionText


class ChatRequest(BaseModel):
    """A question, the conversation before it, and optionally how to answer it."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"question": "SPINET研究中兰瑞肽组的治疗失败时间是多少？"},
                {
                    "question": "And in atypical carcinoids?",
                    "history": [
                        {
                            "role": "user",
                            "content": "What PFS did typical carcinoids reach in SPINET?",
                        },
                        {"role": "assistant", "content": "21.9 months [7]."},
                    ],
                    "mode": "extractive",
                },
            ]
        },
    )

    question: QuestionText
    history: list[ChatTurn] = Field(
        default_factory=list, max_length=MAX_TURNS, description="earlier turns, oldest first"
    )
    top_k: AnswerTopK | None = Field(default=None, description="evidence chunks to retrieve")
    mode: ModeName | None = Field(
        default=None, description="'extractive' (quotes, offline) or 'llm'; default: server's"
    )
    lang: AnswerLanguage | None = Field(default=None, description=LANG_DESCRIPTION)
    stream: bool = Field(
        default=False,
        description="server-sent events: `quoted` (llm mode: the extractive answer, at once), "
        "`delta` (each checked sentence), `answer` (the complete response), or `error`",
    )


class QuoteOut(BaseModel):
    chunk_id: str
    text: str = Field(
        description="the review's sentence as printed, markers included; in an answer in "
        "another language, its rendering (same markers)"
    )
    section: str
    original: str | None = Field(
        default=None,
        description="the sentence as printed when `text` is a rendering; null when `text` is "
        "already the original",
    )


class CitationOut(BaseModel):
    ref: int = Field(description="the review's own reference number, 1-50")
    reference: str = Field(
        description="the reference entry as printed in the review, or its rendering in the "
        "answer's language where one exists"
    )
    reference_original: str | None = Field(
        default=None, description="the entry as printed when `reference` is a rendering"
    )
    quotes: list[QuoteOut]


class PassageCitationOut(BaseModel):
    section: str = Field(description="section of evidence that carries no reference marker")
    quotes: list[QuoteOut]


class EvidenceOut(BaseModel):
    chunk_id: str
    text: str = Field(description="the chunk, or its rendering in the answer's language")
    refs: list[int]
    score: float
    section: str
    kind: Literal["passage", "trial", "reference"]
    original: str | None = Field(
        default=None,
        description="the chunk as indexed when `text` is a rendering; null when `text` is "
        "already the original",
    )


class TableRowOut(BaseModel):
    """One trial of an evidence table: its cells in column order and what it cites."""

    trial_id: str = Field(description="the record's id (GET /v1/trials/{id})")
    cells: list[str]
    refs: list[int] = Field(description="the review's reference numbers of the trial")
    section: str = Field(description="its section; cited as [§section] when it has no refs")


class TableOut(BaseModel):
    """The evidence table of a question about a set of trials, strongest evidence first."""

    summary: str = Field(description="the one sentence shown above the table")
    columns: list[str]
    rows: list[TableRowOut]
    filters: list[str] = Field(description="what the question asked for")

    @classmethod
    def of(cls, table: Any) -> TableOut:
        return cls(
            summary=table.summary,
            columns=list(table.columns),
            rows=[
                TableRowOut(
                    trial_id=r.trial_id, cells=list(r.cells), refs=list(r.refs), section=r.section
                )
                for r in table.rows
            ],
            filters=list(table.filters),
        )


class ChatResponse(BaseModel):
    """A cited answer; ``[n]`` in the text are the review's reference numbers."""

    answer: str = Field(description="the answer; [n] cites reference n, [§section] a passage")
    abstained: bool = Field(description="true when the review does not answer the question")
    citations: list[CitationOut]
    passages: list[PassageCitationOut] = Field(
        description="evidence without a reference number, cited by its section"
    )
    evidence: list[EvidenceOut]
    mode: ModeName
    language: Literal["zh", "en"]
    unsupported: list[str] = Field(
        description="llm mode: sentences the model wrote that failed the citation checks and "
        "were removed from the answer"
    )
    timings_ms: dict[str, float]
    fallback: str | None = Field(
        default=None,
        description="set when the llm mode was asked for, its endpoint failed and the server "
        "(NENQA_LLM_FALLBACK_EXTRACTIVE) answered in the extractive mode instead: says why",
    )
    quoted_answer: str | None = Field(
        default=None,
        description="llm mode: the verified extractive answer (quotes from the review) shown "
        "before the synthesized `answer`; `citations` cover both",
    )
    table: TableOut | None = Field(
        default=None,
        description="a question about a set of trials: every matching trial record, one row "
        "each, strongest evidence first (also in `answer` as Markdown)",
    )


class SearchFiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["passage", "trial", "reference"] | None = None
    phase: str | None = Field(default=None, max_length=20, description="trial phase, e.g. 'III'")
    site: str | None = Field(default=None, max_length=100, description="tumour site, e.g. 'lung'")
    drug: str | None = Field(default=None, max_length=100, description="drug name, zh or en")
    ref: WholeNumber | None = Field(default=None, description="reference number the chunk cites")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: QuestionText
    history: list[ChatTurn] = Field(default_factory=list, max_length=MAX_TURNS)
    top_k: WholeNumber = Field(default=5, ge=1, le=50)
    filters: SearchFiltersIn | None = None


class SearchResponse(BaseModel):
    question: str
    results: list[EvidenceOut]


class ReferenceOut(BaseModel):
    number: int
    text: str
    authors: list[str]
    title: str
    journal: str
    year: int | None
    volume_pages: str
    alternate: str | None = Field(description="a second form of the entry (e.g. English)")
    cited_in: list[QuoteOut] = Field(description="the review's sentences that cite it")


class ReferenceList(BaseModel):
    count: int
    references: list[ReferenceOut]


class TrialList(BaseModel):
    count: int
    trials: list[TrialRecord]


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    """``unavailable``: loaded, but the index (a Chroma server) does not answer right now."""

    status: Literal["ready", "loading", "failed", "unavailable"]
    detail: str | None = None
    chunks: int | None = Field(
        default=None, description="retrievable chunks (renderings not counted: `renderings`)"
    )
    renderings: int | None = Field(
        default=None, description="rendering chunks: other-language twins of those chunks"
    )
    sentences: int | None = None
    references: int | None = None
    trials: int | None = None
    modes: list[str] = Field(default_factory=list)
    load_seconds: float | None = None
    worker_pid: int | None = Field(
        default=None, description="the process that answered (one of several with --workers N)"
    )
    generation: int | None = Field(
        default=None, description="the index generation this worker serves (grows per change)"
    )
    fingerprint: str | None = Field(
        default=None, description="fingerprint of the chunks of that generation"
    )


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class OpenAIError(BaseModel):
    message: str
    type: str
    code: int


class ErrorResponse(BaseModel):
    """What went wrong, in words a user can act on (``error``: the same, OpenAI-shaped)."""

    detail: str
    error: OpenAIError
    errors: list[ErrorItem] | None = None


# OpenAI-compatible chat completions ---------------------------------------------------------


MAX_CONTENT_PARTS = 16


class TextPart(BaseModel):
    """One part of a message's content, as LangChain's ``ChatOpenAI`` and chat front ends send
    it: ``{"type": "text", "text": "..."}``; other part types (images, audio, files) are refused
    with a 422 naming the type."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["text"] = Field(description="'text': the only part type answered")
    text: QuestionText

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, part: object) -> object:
        # Checked first, so an image part is refused for its type, not for lacking "text".
        kind = part.get("type") if isinstance(part, dict) else None
        if isinstance(kind, str) and kind != "text":
            raise ValueError(
                f"a message content part of type '{kind}' cannot be answered: this server "
                "reads text only; send the question as a string or as parts of type 'text'"
            )
        return part


class CompletionMessage(BaseModel):
    """A chat message; system messages are accepted and ignored (they cannot change the rules).

    ``content`` is a string or a list of text parts (joined with a newline, as OpenAI reads them).
    """

    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "user", "assistant"]
    content: Annotated[
        Annotated[QuestionText, Tag("string")]
        | Annotated[
            list[TextPart], Field(min_length=1, max_length=MAX_CONTENT_PARTS), Tag("parts")
        ],
        # Errors name the form sent: a list's part, not also "should be a valid string".
        Discriminator(lambda value: "parts" if isinstance(value, list) else "string"),
    ] = Field(description="the message: a string, or a list of parts of type 'text'")
    name: str | None = Field(default=None, max_length=64)

    @property
    def text(self) -> str:
        """The message as one string: its text parts joined with a newline."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class CompletionRequest(BaseModel):
    """OpenAI ``/v1/chat/completions`` request; the last user message is the question.

    ``model`` ``nenqa-extractive`` or ``nenqa-llm`` picks the answer mode (or the extra field
    ``mode``); any other model name uses the server's default mode. Sampling parameters are
    accepted and ignored. Unknown fields are ignored, as OpenAI clients send many.
    """

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(default="nenqa", max_length=100)
    messages: list[CompletionMessage] = Field(
        min_length=1,
        max_length=MAX_TURNS + 1,
        json_schema_extra={"contains": {"properties": {"role": {"const": "user"}}}},
        description="the conversation; must contain at least one user message",
    )
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: TokenCount | None = None
    n: Annotated[Literal[1], BeforeValidator(_not_boolean)] | None = None
    user: str | None = Field(default=None, max_length=256)
    mode: ModeName | None = Field(default=None, description="nenqa extension: answer mode")
    top_k: AnswerTopK | None = Field(default=None, description="nenqa extension")
    lang: AnswerLanguage | None = Field(
        default=None, description=f"nenqa extension: {LANG_DESCRIPTION}"
    )

    @model_validator(mode="after")
    def _has_user_message(self) -> CompletionRequest:
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("messages must contain at least one message with role 'user'")
        return self


class CompletionMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class CompletionChoice(BaseModel):
    index: int = 0
    message: CompletionMessageOut
    finish_reason: Literal["stop"] = "stop"


class CompletionResponse(BaseModel):
    """OpenAI ``chat.completion``, plus nenqa's fields ``citations``, ``passages``, ``abstained``.

    With ``stream: true`` the response is ``text/event-stream``: ``data:`` lines carrying
    ``chat.completion.chunk`` objects (each content delta holds whole sentences, so a citation
    marker is never split), the last chunk with ``finish_reason`` and the same extra fields,
    then ``data: [DONE]``.
    """

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: dict[str, Any] | None = Field(
        default=None, description="not reported (tokens are not counted)"
    )
    citations: list[CitationOut]
    passages: list[PassageCitationOut]
    abstained: bool
    unsupported: list[str]
    fallback: str | None = Field(
        default=None,
        description="set when the llm mode was asked for, its endpoint failed and the server "
        "(NENQA_LLM_FALLBACK_EXTRACTIVE) answered in the extractive mode instead: says why",
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "nenqa"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# From the domain types --------------------------------------------------------------------


def quote_out(quote: Any) -> QuoteOut:
    return QuoteOut(
        chunk_id=quote.chunk_id, text=quote.text, section=quote.section, original=quote.original
    )


def citations_out(answer: Any) -> tuple[list[CitationOut], list[PassageCitationOut]]:
    """An ``Answer``'s citations and passage citations as response models."""
    citations = [
        CitationOut(
            ref=c.ref,
            reference=c.reference,
            reference_original=c.reference_original,
            quotes=[quote_out(q) for q in c.quotes],
        )
        for c in answer.citations
    ]
    passages = [
        PassageCitationOut(section=p.section, quotes=[quote_out(q) for q in p.quotes])
        for p in answer.passages
    ]
    return citations, passages


def evidence_out(evidence: Any, language: str, rendering: Callable[[str, str], Any]) -> EvidenceOut:
    """One piece of evidence as an answer in ``language`` shows it: the chunk's twin in that
    language where ``rendering(chunk_id, language)`` has one, the chunk in ``original``."""
    twin = (
        None
        if evidence.chunk.language == language
        else rendering(evidence.chunk.chunk_id, language)
    )
    if twin is None:
        return EvidenceOut(**evidence.as_json())
    return EvidenceOut(**{**evidence.as_json(), "text": twin.text, "original": evidence.chunk.text})


def _no_rendering(chunk_id: str, language: str) -> None:
    return None


def chat_response(
    answer: Any, rendering: Callable[[str, str], Any] = _no_rendering
) -> ChatResponse:
    """The ``/v1/chat`` response for an ``Answer``; ``rendering(chunk_id, language)`` gives the
    twin an answer in another language shows its evidence in (``HybridSearcher.rendering``)."""
    # The llm mode's citations cover the quoted answer shown before it, too.
    citations, passages = citations_out(with_quotes(answer))
    return ChatResponse(
        answer=answer.text,
        abstained=answer.abstained,
        citations=citations,
        passages=passages,
        evidence=[evidence_out(e, answer.language, rendering) for e in answer.evidence],
        mode=answer.mode,
        language=answer.language,
        unsupported=list(answer.unsupported),
        timings_ms=answer.timings_ms,
        fallback=answer.fallback,
        quoted_answer=answer.quoted.text if answer.quoted is not None else None,
        table=TableOut.of(answer.table) if getattr(answer, "table", None) else None,
    )
