"""Citation rules shared by the answer modes: markers, citation lists and the checks of a draft.

- A quoted sentence keeps its own reference numbers where the review prints them
  (``^[4-5]`` becomes ``[4][5]``); a sentence without a marker gets its passage's ``[§section]``.
- A model's sentence cites nothing itself: ``answer.claims.ClaimChecker`` finds the evidence
  sentence(s) it restates and ``cite`` gives it their markers. Any marker the model
  typed anyway (``[S1]``, ``[7]``, ``^[12]``, ``[§…]``) is removed first (``KEY_MARKER``,
  ``FOREIGN_MARKER``); ``DraftSentenceSplitter`` cuts a streamed draft into whole sentences.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from answer.base import passage_marker, reference_markers
from answer.sentences import EvidenceSentence
from nenqa.text import (
    REVIEW_MARKER,
    has_cjk,
    is_abbreviation,
    parse_citation_markers,
    plain_latex,
)
from nenqa.types import Citation, PassageCitation, Quote, Reference

# Keys of the earlier prompt format a model may still write: [S1], [S1, S3], 【S2】.
KEY_MARKER = re.compile(r"[\[【]\s*(S\d+(?:\s*[,，;；、]\s*S\d+)*)\s*[\]】]")
# Markers a model must not write itself: review numbers, ranges, passage markers.
FOREIGN_MARKER = re.compile(
    r"\^?[\[【]\s*(?:(?:refs?\.?\s*)?\d+(?:\s*[-–—~,，、]\s*\d+)*|§[^\]】]*)\s*[\]】]",
    re.IGNORECASE,
)
_DRAFT_END = re.compile(r"[。！？；!?\n]|\.(?=\s)")


def render_quote(
    sentence: EvidenceSentence,
    known_refs: Iterable[int] | None = None,
    *,
    rendering: str | None = None,
) -> str:
    """A review sentence as an answer prints it: ``[n]`` markers in place, or ``[§section]``.

    LaTeX-ish extraction residue (``$P>0.05$``, ``\\geq 50\\%``) is shown as plain text; numbers
    outside ``known_refs`` (when given) are never printed as citations. With ``rendering`` (the
    sentence in another language, markers kept) that text is printed, with the same markers.
    """
    known = None if known_refs is None else set(known_refs)

    def replace(match: re.Match[str]) -> str:
        refs = [n for n in parse_citation_markers(match.group()) if known is None or n in known]
        return reference_markers(refs)

    text = plain_latex(REVIEW_MARKER.sub(replace, rendering or sentence.text))
    text = re.sub(r"\s{2,}", " ", text).strip()
    if not sentence.refs:
        text += passage_marker(sentence.section)
    return text


@dataclass(frozen=True)
class QuotedSentence:
    """A sentence an answer rests on and the retrieved chunk it came from.

    ``rendering`` is the sentence in the answer's language when the answer shows that instead
    of the sentence as printed.
    """

    sentence: EvidenceSentence
    chunk_id: str
    rendering: str | None = None

    @property
    def quote(self) -> Quote:
        if self.rendering is None:
            return Quote(self.chunk_id, self.sentence.text, self.sentence.section)
        return Quote(self.chunk_id, self.rendering, self.sentence.section, self.sentence.text)

    def shown_in(self, language: str) -> QuotedSentence:
        """This sentence as an answer in ``language`` shows it: its rendering where it has one
        (``rendering`` stays ``None`` where it has none, or is already in that language)."""
        if self.sentence.language == language:
            return self
        return QuotedSentence(self.sentence, self.chunk_id, self.sentence.renderings.get(language))

    @property
    def untranslated(self) -> bool:
        """Shown as printed although the answer is in another language (no rendering)."""
        return self.rendering is None


def collect_citations(
    quoted: Sequence[QuotedSentence],
    references: Mapping[int, Reference],
    reference_rendering: Callable[[str], str | None] | None = None,
) -> tuple[tuple[Citation, ...], tuple[PassageCitation, ...]]:
    """Citations in order of first appearance; sentences without refs become passage citations.

    A number missing from ``references`` is never cited. ``reference_rendering`` gives an
    entry in the answer's language where one exists (the printed entry is then kept beside it).
    """
    by_ref: dict[int, list[Quote]] = {}
    by_section: dict[str, list[Quote]] = {}
    for item in quoted:
        refs = [n for n in item.sentence.refs if n in references]
        if not item.sentence.refs:
            _append_once(by_section.setdefault(item.sentence.section, []), item.quote)
        for ref in refs:
            _append_once(by_ref.setdefault(ref, []), item.quote)
    citations = tuple(
        _citation(ref, references[ref].text, tuple(quotes), reference_rendering)
        for ref, quotes in by_ref.items()
    )
    passages = tuple(PassageCitation(section, tuple(q)) for section, q in by_section.items())
    return citations, passages


def _citation(
    ref: int,
    entry: str,
    quotes: tuple[Quote, ...],
    reference_rendering: Callable[[str], str | None] | None,
) -> Citation:
    rendering = reference_rendering(entry) if reference_rendering else None
    if rendering is None:
        return Citation(ref, entry, quotes)
    return Citation(ref, rendering, quotes, reference_original=entry)


def _append_once(quotes: list[Quote], quote: Quote) -> None:
    if quote not in quotes:
        quotes.append(quote)


def cite(claim: str, cited: Sequence[QuotedSentence]) -> str:
    """``claim`` with its evidence's markers before its final punctuation ("... months [7].")."""
    refs = sorted({n for q in cited for n in q.sentence.refs})
    markers = reference_markers(refs)
    for q in cited:
        if not q.sentence.refs and (marker := passage_marker(q.sentence.section)) not in markers:
            markers += marker
    body = claim.rstrip()
    end = re.search(r"[。．.!?！？；;]*$", body)
    cut = end.start() if end else len(body)
    text, final = body[:cut].rstrip(), body[cut:]
    # Chinese text takes its markers without a space, whatever the answer's language.
    chinese = final[:1] in "。！？；" if final else has_cjk(text[-1:])
    if chinese:
        return f"{text}{markers}{final or '。'}"
    return f"{text}{' ' if markers else ''}{markers}{final or '.'}"


class DraftSentenceSplitter:
    """Cuts a model's streamed text into whole sentences, keys after a terminator included.

    ``feed`` returns the sentences completed so far; a sentence is complete once text of the
    next one has arrived, so a key written after the full stop (``… months. [S2]``) is never
    separated from its sentence. ``flush`` returns the rest at the end of the stream.
    """

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        sentences: list[str] = []
        while (cut := self._complete_sentence_end()) is not None:
            sentence, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
            if sentence:
                sentences.append(sentence)
        return sentences

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def _complete_sentence_end(self) -> int | None:
        text = self._buffer
        for match in _DRAFT_END.finditer(text):
            if match.group() == "." and is_abbreviation(text, match.start()):
                continue
            end = match.end()
            while True:
                while end < len(text) and text[end] in " \t\n":  # a key may follow on the next line
                    end += 1
                key = KEY_MARKER.match(text, end) or FOREIGN_MARKER.match(text, end)
                if key:
                    end = key.end()
                    continue
                if end < len(text) and text[end] in "[【^":
                    return None  # a marker that is still arriving
                break
            if end >= len(text):
                return None  # the next sentence has not started yet
            return end
        return None


def split_draft(text: str) -> list[str]:
    """All sentences of a complete model answer."""
    splitter = DraftSentenceSplitter()
    return [*splitter.feed(text), *splitter.flush()]
