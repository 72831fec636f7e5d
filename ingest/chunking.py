"""Cut a parsed ``Document`` into retrieval chunks: sentence windows and reference entries.

Passage chunks are windows of consecutive sentences inside one paragraph (never across a
paragraph or section); consecutive windows share ``overlap_sentences`` sentences so a fact
stated over two sentences is whole in at least one chunk. Each reference entry is one chunk.

Chunk IDs are ``{kind prefix}-{sha1[:16]}`` over (doc_id, kind, section, ordinal, text), where
the ordinal is ``"{paragraph}.{window}"`` for passages and the reference number for references:
re-chunking gives the same IDs, and editing one paragraph changes only that paragraph's IDs.

Metadata holds flat scalars only (Chroma's rule). List-valued fields are comma-joined with a
leading and trailing comma — ``refs=",9,10,"``, ``trials=",REMINET,"`` — so a substring filter
for ``",9,"`` matches reference 9 and never 19 or 90; an empty list is ``""``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

from ingest.review import normalise_for_matching
from nenqa.types import Chunk, ChunkKind, Document, Paragraph, Sentence, Span

REFERENCES_SECTION = "参考文献"
KIND_PREFIX: dict[ChunkKind, str] = {"passage": "p", "reference": "r", "trial": "t"}

# Trial names the review and its references use, as (canonical name, alias patterns).
# Canonical names follow the review's own spelling; aliases include the sponsor's study codes
# found in the reference titles (GETNE1509 is TALENT, GETNE 1601 is DUNE ...). Patterns are
# matched against ``normalise_for_matching`` text, so en dashes are already ``-``. Plain-word
# names (LUNA, DUNE, TALENT ...) match case-sensitively; coded names ignore case.
KNOWN_TRIALS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PROMID", ("PROMID",)),
    ("CLARINET FORTE", ("CLARINET[ -]?FORTE",)),
    ("CLARINET", ("CLARINET",)),
    ("SPINET", ("SPINET",)),
    ("REMINET", ("REMINET",)),
    ("GETNE-TRASGU", ("(?i:GETNE-TRASGU)",)),
    ("LUNA", ("LUNA",)),
    ("RADIANT-2", ("(?i:RADIANT-2)",)),
    ("SANET-p", ("(?i:SANET-p)",)),
    ("SANET-ep", ("(?i:SANET-ep)",)),
    ("TALENT", ("TALENT", "(?i:GETNE ?1509)")),
    ("AXINET", ("AXINET",)),
    ("ECOG-ACRIN E2211", ("(?i:(?:ECOG-ACRIN )?E2211)",)),
    ("SEQTOR", ("SEQTOR",)),
    ("ET-NEC", ("ET-NEC",)),
    ("Keynote-028", ("(?i:KEYNOTE-?028)",)),
    ("Keynote-158", ("(?i:KEYNOTE-?158)",)),
    ("DART SWOG S1609", ("DART(?: SWOG)?(?: S?1609)?", "SWOG S?1609")),
    ("GCO-001 NIPINEC", ("(?:GCO-001 )?NIPINEC", "GCO-001")),
    ("DUNE", ("DUNE", "(?i:GETNE ?1601)")),
    ("IMpower133", ("(?i:IMpower ?133)",)),
    ("CASPIAN", ("CASPIAN",)),
    ("NICE-NEC", ("(?i:NICE-NEC)", "(?i:GETNE ?T1913)")),
    ("TRINITY", ("TRINITY",)),
)
NCT_NUMBER = re.compile(r"NCT\d{8}")

_TRIAL_PATTERNS = tuple(
    (name, re.compile(rf"(?<![A-Za-z0-9-])(?:{alias})(?![A-Za-z0-9])"))
    for name, aliases in KNOWN_TRIALS
    for alias in aliases
)


def find_trial_mentions(text: str) -> tuple[str, ...]:
    """Canonical names of the trials in ``text`` (``KNOWN_TRIALS`` and NCT numbers), in order.

    A longer name wins over a shorter one at the same place: ``CLARINET FORTE`` is not also
    reported as ``CLARINET``. Each name appears once.
    """
    folded = normalise_for_matching(text)
    matches = [
        (match.start(), match.end(), name)
        for name, pattern in _TRIAL_PATTERNS
        for match in pattern.finditer(folded)
    ]
    matches += [(m.start(), m.end(), m.group()) for m in NCT_NUMBER.finditer(folded)]
    matches.sort(key=lambda m: (m[0], -(m[1] - m[0])))
    names: list[str] = []
    taken_until = -1
    for start, end, name in matches:
        if start < taken_until:
            continue
        taken_until = end
        if name not in names:
            names.append(name)
    return tuple(names)


def chunk_document(
    doc: Document, *, max_chars: int = 320, overlap_sentences: int = 1
) -> list[Chunk]:
    """Passage chunks of ``doc``: overlapping sentence windows of about ``max_chars`` characters.

    A window grows while it stays within ``max_chars``; a single longer sentence is a chunk of
    its own. Chunk text is the sentences joined (no space in Chinese, one in English), and
    ``sentence_offsets`` says where each one is in it; ``spans`` point at the source pieces,
    adjacent ones merged.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    if overlap_sentences < 0:
        raise ValueError(f"overlap_sentences must be >= 0, got {overlap_sentences}")
    chunks: list[Chunk] = []
    for section in doc.sections:
        for paragraph_index, paragraph in enumerate(section.paragraphs):
            windows = sentence_windows(paragraph.sentences, max_chars, overlap_sentences)
            for window_index, (lo, hi) in enumerate(windows):
                chunks.append(
                    _passage_chunk(
                        doc,
                        section.path,
                        section.number,
                        paragraph,
                        paragraph_index,
                        window_index,
                        paragraph.sentences[lo:hi],
                    )
                )
    return chunks


def sentence_windows(
    sentences: Sequence[Sentence], max_chars: int, overlap_sentences: int = 1
) -> list[tuple[int, int]]:
    """Half-open ``(start, end)`` sentence index ranges covering all sentences in order.

    The overlap shrinks where keeping it would push the next window past ``max_chars`` with
    only the overlap in it, so no window is a repeat of the end of the one before.
    """
    lengths = [len(sentence.text) for sentence in sentences]
    windows: list[tuple[int, int]] = []
    start = 0
    while start < len(lengths):
        end, size = start + 1, lengths[start]
        while end < len(lengths) and size + lengths[end] <= max_chars:
            size += lengths[end]
            end += 1
        windows.append((start, end))
        if end == len(lengths):
            break
        next_start = max(end - overlap_sentences, start + 1)
        while next_start < end and sum(lengths[next_start : end + 1]) > max_chars:
            next_start += 1
        start = next_start
    return windows


def reference_chunks(doc: Document) -> list[Chunk]:
    """One ``reference`` chunk per entry: ``"[n] entry"`` plus the alternate form on a new line."""
    chunks = []
    for reference in doc.references:
        text = f"[{reference.number}] {reference.text}"
        if reference.alternate:
            text += f"\n{reference.alternate}"
        trials = find_trial_mentions(text)
        metadata: dict[str, str | int | float | bool] = {
            **_common_metadata(doc, "reference", REFERENCES_SECTION, (reference.number,), trials),
            "ordinal": reference.number,
            "reference_number": reference.number,
            "journal": reference.journal,
            "start": reference.span.start,
            "end": reference.span.end,
        }
        if reference.year is not None:
            metadata["year"] = reference.year
        chunks.append(
            Chunk(
                chunk_id=chunk_id(
                    doc.doc_id, "reference", REFERENCES_SECTION, reference.number, text
                ),
                doc_id=doc.doc_id,
                kind="reference",
                text=text,
                section=REFERENCES_SECTION,
                refs=(reference.number,),
                trials=trials,
                spans=(reference.span,),
                metadata=metadata,
                sentence_offsets=(),  # a reference entry is cited, never quoted
            )
        )
    return chunks


def chunk_id(doc_id: str, kind: ChunkKind, section: str, ordinal: object, text: str) -> str:
    """``{p|r|t}-`` and the first 16 hex digits of sha1 over the chunk's identity and text."""
    key = "\x1f".join((doc_id, kind, section, str(ordinal), text))
    return f"{KIND_PREFIX[kind]}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:16]}"


def joined_metadata_list(values: Iterable[object]) -> str:
    """``",7,9,"`` for (7, 9) and ``""`` for none: the filterable form of a list in metadata."""
    items = [str(value) for value in values]
    return f",{','.join(items)}," if items else ""


def _common_metadata(
    doc: Document,
    kind: ChunkKind,
    section: str,
    refs: tuple[int, ...],
    trials: tuple[str, ...],
) -> dict[str, str | int | float | bool]:
    return {
        "doc_id": doc.doc_id,
        "kind": kind,
        "section": section,
        "refs": joined_metadata_list(refs),
        "trials": joined_metadata_list(trials),
    }


def _passage_chunk(
    doc: Document,
    section_path: str,
    section_number: str,
    paragraph: Paragraph,
    paragraph_index: int,
    window_index: int,
    sentences: Sequence[Sentence],
) -> Chunk:
    separator = " " if paragraph.language == "en" else ""
    text = separator.join(sentence.text for sentence in sentences)
    offsets, at = [], 0
    for sentence in sentences:
        offsets.append((at, at + len(sentence.text)))
        at += len(sentence.text) + len(separator)
    refs = tuple(sorted({n for sentence in sentences for n in sentence.refs}))
    trials = find_trial_mentions(text)
    spans = _merge_spans(span for sentence in sentences for span in sentence.spans)
    ordinal = f"{paragraph_index}.{window_index}"
    metadata: dict[str, str | int | float | bool] = {
        **_common_metadata(doc, "passage", section_path, refs, trials),
        "section_number": section_number,
        "paragraph": paragraph_index,
        "ordinal": window_index,
        "language": paragraph.language,
        "sentences": len(sentences),
        "start": spans[0].start,
        "end": spans[-1].end,
    }
    return Chunk(
        chunk_id=chunk_id(doc.doc_id, "passage", section_path, ordinal, text),
        doc_id=doc.doc_id,
        kind="passage",
        text=text,
        section=section_path,
        refs=refs,
        trials=trials,
        spans=spans,
        metadata=metadata,
        sentence_offsets=tuple(offsets),
    )


def _merge_spans(spans: Iterable[Span]) -> tuple[Span, ...]:
    merged: list[Span] = []
    for span in spans:
        if merged and merged[-1].end == span.start:
            merged[-1] = Span(merged[-1].start, span.end)
        else:
            merged.append(span)
    return tuple(merged)
