"""Hybrid search: dense (Chroma) and lexical (BM25) rankings fused, with a bilingual bridge.

The pipeline for one question:
1. the retrieval query is the question plus the conversation's recent user turns;
2. the glossary adds the other language's names of every term it mentions;
3. dense and lexical rankings are fused with weighted reciprocal rank fusion;
4. a reference or trial hit lifts the passages that cite that reference or name that trial,
   so "lanreotide" reaches 兰瑞肽 passages through reference titles;
5. the best ``k`` chunks come back as ``Evidence``, in a ``Retrieval`` that also keeps the
   query, the expansions and the query vector, so the answer modes reuse them.

Rendering chunks ("twins": another language's rendering of a chunk, ``Chunk.rendering_of``)
are indexed like chunks, dense and lexical, and stand for their parents, so ``Evidence`` always
carries the parent: the renderings in the question's language are a third ranking (BM25 over
all the text in that language, the renderings' places kept; weight
``FusionWeights.rendering_lexical``), so an English question reaches a Chinese passage through
its English words while the original rankings stay as without renderings. In the dense
ranking a parent would take the better place of itself and its twin (``dense_renderings``,
off: measured there). ``rendering(chunk_id, language)`` gives the twin.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nenqa.glossary import Glossary, Term, load_glossary_table, normalize_text
from nenqa.settings import Settings
from nenqa.text import has_cjk
from nenqa.timing import elapsed_ms
from nenqa.types import Chunk, ChunkKind, Evidence, Question, Retrieval, Turn
from retriever.chunk_table import cited_document, citing_key
from retriever.embeddings import ChromaEmbeddingFunction, Embedder, load_embedder
from retriever.generation import Generation
from retriever.glossary import harvest_definitions
from retriever.lexical import register_terms, tokenize
from retriever.snapshot import (
    SearchTables,
    build_saved,
    load_tables,
    one_builder,
    snapshots_dir,
)
from retriever.store import ChunkStore, IndexUnavailableError, decode_list

log = logging.getLogger("nenqa.search")


@dataclass(frozen=True)
class SearchFilters:
    """Restrict results by chunk kind or by trial metadata (case-insensitive values)."""

    kind: ChunkKind | None = None
    phase: str | None = None
    site: str | None = None
    drug: str | None = None
    ref: int | None = None

    def accepts(self, chunk: Chunk) -> bool:
        if self.kind and chunk.kind != self.kind:
            return False
        if self.ref is not None and self.ref not in chunk.refs:
            return False
        meta = chunk.metadata
        if self.phase and normalize_text(str(meta.get("phase", ""))) != normalize_text(self.phase):
            return False
        if self.site and normalize_text(self.site) not in _folded_list(meta.get("site")):
            return False
        return not (self.drug and normalize_text(self.drug) not in _folded_list(meta.get("drug")))

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.kind, self.phase, self.site, self.drug, self.ref))


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the fused ranking, tuned on ``eval/qa.jsonl`` (see docs/benchmarks.md)."""

    dense: float = 1.25
    lexical: float = 1.0
    rrf_k: int = 60
    reference_lift: float = 0.3
    trial_lift: float = 0.4
    reference_result_factor: float = 0.5
    history_turns: int = 2
    # Renderings (twins) in the dense ranking: off, since the multilingual model already finds
    # the parent across languages (on eval/qa.jsonl ref_recall@5 / fact_recall@5 / MRR@10 went
    # .976/.971/.893 -> .971/.963/.887 with dense twins).
    dense_renderings: bool = False
    # Weight of a third ranking, BM25 over the renderings in the question's language, each twin
    # standing for its parent; the original lexical ranking stays over the parents alone, so a
    # question in the original language ranks as without renderings. Chosen on the tune half
    # of eval/qa.jsonl with benchmarks/tune_renderings.py, then checked on answers: the tune
    # half ranks 1.5 first (MRR@10 .925 vs .899 at .75), but 1.5 cost four English list answers
    # key facts on the full set (.949 -> .932) while .75 keeps every answer metric at its level
    # without renderings; the full-set check informed the choice (docs/benchmarks.md).
    rendering_lexical: float = 0.75


class HybridSearcher:
    """Searches one index; build once per process with ``load_searcher``."""

    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        glossary: Glossary,
        *,
        weights: FusionWeights | None = None,
        dense_candidates: int = 40,
        lexical_candidates: int = 40,
        default_k: int = 5,
        tables: SearchTables | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.glossary = glossary
        self.weights = weights or FusionWeights()
        self.dense_candidates = dense_candidates
        self.lexical_candidates = lexical_candidates
        self.default_k = default_k
        self._lock = threading.Lock()
        if tables is None:
            self.refresh()
        else:
            self._install(tables)

    def refresh(self) -> None:
        """Rebuild the chunk table and lexical indexes from the store, in place (a server swaps
        in a ``reopened`` searcher instead, so no request sees two generations)."""
        self._install(build_tables(self.store.generation(), self.store.all_chunks()))

    def _install(self, tables: SearchTables) -> None:
        # Opened tables read chunks on demand and look positions up in memory-mapped arrays
        # (chunk_table), so nothing here grows with the corpus.
        layout = tables.chunk_layout()
        with self._lock:
            self.generation = tables.generation
            self.chunks, self.parents = tables.chunks, tables.chunks[: tables.parent_count]
            self._layout = layout
            self.lexical, self._rendering_lexical = tables.lexical, tables.rendering_lexical

    def reopened(self) -> HybridSearcher:
        """A new searcher over the same store and model holding the index's current generation
        (chunks, glossary, lexical indexes: saved ones where another process saved them); this
        one keeps serving the requests that hold it, so no request mixes two generations."""
        tables, glossary = current_tables(self.store)
        return HybridSearcher(
            self.store,
            self.embedder,
            glossary,
            tables=tables,
            weights=self.weights,
            dense_candidates=self.dense_candidates,
            lexical_candidates=self.lexical_candidates,
            default_k=self.default_k,
        )

    def __len__(self) -> int:
        """The number of retrievable chunks (parents); ``twin_count`` counts their renderings."""
        return len(self.parents)

    @property
    def twin_count(self) -> int:
        """How many rendering chunks the index holds beside the ``len(self)`` parents."""
        return len(self.chunks) - len(self.parents)

    def chunks_of_kind(self, kind: str) -> list[Chunk]:
        """Every chunk of ``kind`` (renderings included), read without walking the others."""
        return [self.chunks[position] for position in self._layout.positions_of_kind(kind)]

    def rendering(self, chunk_id: str, language: str) -> Chunk | None:
        """The twin of a chunk in ``language``, or ``None`` where the index has none."""
        parent = self._layout.position(chunk_id)
        if parent is None or parent >= len(self.parents):
            return None
        twin = self._layout.rendering(parent, language)
        return None if twin is None else self.chunks[twin]

    def retrieval_query(self, question: str, history: Sequence[Turn] = ()) -> str:
        """The question, preceded by the last user turns so follow-ups keep their subject."""
        earlier = [t.content for t in history if t.role == "user"][-self.weights.history_turns :]
        return " ".join([*earlier, question]).strip()

    def prepare(self, question: Question) -> Retrieval:
        """The retrieval query of a question, its glossary expansions and its query vector.

        No ranking yet (``evidence`` is empty): ``retrieve`` ranks; a caller that ranks chunks
        by other means (eval's tutorial recipe) puts its own evidence in with ``replace``.
        """
        started = time.perf_counter()
        query = self.retrieval_query(question.text, question.history)
        expansions = tuple(self.glossary.expand(query))
        if not query:
            return Retrieval(question, query, expansions)
        dense_text = f"{query} ({'; '.join(expansions)})" if expansions else query
        vector = np.asarray(self.embedder.embed_queries([dense_text])[0], dtype=np.float32)
        return Retrieval(
            question, query, expansions, vector, timings_ms={"embed": elapsed_ms(started, digits=3)}
        )

    def retrieve(
        self, question: Question, k: int | None = None, *, filters: SearchFilters | None = None
    ) -> Retrieval:
        """The ``k`` best chunks for a question in Chinese or English, best first.

        ``k`` defaults to ``question.top_k``, then to ``default_k``. An empty question (and no
        earlier user turn) retrieves nothing.
        """
        k = k or question.top_k or self.default_k
        filters = filters or SearchFilters()
        started = time.perf_counter()
        prepared = self.prepare(question)
        vector = prepared.query_vector
        if vector is None:
            return replace(prepared, timings_ms={"total": elapsed_ms(started, digits=3)})
        timings = dict(prepared.timings_ms)

        chunks, layout, parent_count = self.chunks, self._layout, len(self.parents)
        # Filters are applied to a wider candidate pool; kind is pushed down to Chroma. Twins
        # take places in the dense list, so it asks for as many more as there are renderings.
        widen = (10 if filters.active else 1) * (1 + min(1, self.twin_count))
        where = {"kind": filters.kind} if filters.kind else None
        dense_hits = self.store.query(vector, self.dense_candidates * widen, where=where)
        dense_twins = self.weights.dense_renderings
        dense = fold_renderings(
            [
                (int(layout.folded[p]), sim)
                for cid, sim in dense_hits
                if (p := layout.position(cid)) is not None and (dense_twins or p < parent_count)
            ],
            chunks,
            filters,
        )[: self.dense_candidates]
        timings["dense"] = elapsed_ms(started, digits=3) - timings["embed"]

        extra_tokens = [tok for term in prepared.expansions for tok in tokenize(term)]
        candidates = self.lexical_candidates * (10 if filters.active else 1)
        ranked_lexical = self.lexical.rank(prepared.query, candidates, extra_tokens=extra_tokens)
        lexical = [(i, s) for i, s in ranked_lexical if _accepts(filters, chunks, i)]
        lexical = lexical[: self.lexical_candidates]
        # Words match words of their own language: renderings rank for a question in theirs.
        language = "zh" if has_cjk(prepared.query) else "en"
        rendered: list[tuple[int, float]] = []
        if language in self._rendering_lexical:
            index, parent_of = self._rendering_lexical[language]
            ranked = index.rank(prepared.query, candidates, extra_tokens=extra_tokens)
            hits = [(p, s) for i, s in ranked if (p := _parent(parent_of[i])) is not None]
            rendered = fold_renderings(hits, chunks, filters)
            rendered = rendered[: self.lexical_candidates]

        fused = self._fuse(dense, lexical, filters, rendered)
        ranked = sorted(fused.items(), key=lambda item: (-item[1], chunks[item[0]].chunk_id))
        evidence = tuple(Evidence(chunks[i], score) for i, score in ranked[:k])
        timings["total"] = elapsed_ms(started, digits=3)
        return replace(prepared, evidence=evidence, timings_ms=timings)

    def search(
        self,
        question: str,
        k: int | None = None,
        *,
        history: Sequence[Turn] = (),
        filters: SearchFilters | None = None,
    ) -> list[Evidence]:
        """``retrieve``'s evidence for a question text (``/v1/search``, the CLI, benchmarks)."""
        retrieval = self.retrieve(Question(question, tuple(history)), k, filters=filters)
        return list(retrieval.evidence)

    def _fuse(
        self,
        dense: list[tuple[int, float]],
        lexical: list[tuple[int, float]],
        filters: SearchFilters,
        rendered: Sequence[tuple[int, float]] = (),
    ) -> dict[int, float]:
        w = self.weights
        fused: dict[int, float] = defaultdict(float)
        for rank, (i, _) in enumerate(dense):
            fused[i] += w.dense / (w.rrf_k + rank + 1)
        for rank, (i, _) in enumerate(lexical):
            fused[i] += w.lexical / (w.rrf_k + rank + 1)
        for rank, (i, _) in enumerate(rendered):
            fused[i] += w.rendering_lexical / (w.rrf_k + rank + 1)

        # A reference or trial hit lifts the passages that cite it or name it.
        lifted: dict[int, float] = defaultdict(float)
        citing, naming = self._layout.citing, self._layout.naming
        for i, score in fused.items():
            chunk = self.chunks[i]
            cites = cited_document(chunk)
            if chunk.kind == "reference":
                targets = [p for ref in chunk.refs for p in citing.get(citing_key(cites, ref))]
                lift = w.reference_lift
            elif chunk.kind == "trial":
                targets = [p for ref in chunk.refs for p in citing.get(citing_key(cites, ref))]
                targets += [p for name in chunk.trials for p in naming.get(normalize_text(name))]
                lift = w.trial_lift
            else:
                continue
            for p in set(targets):
                if filters.accepts(self.chunks[p]):
                    lifted[p] = max(lifted[p], lift * score)
        for p, bonus in lifted.items():
            fused[p] += bonus
        for i in list(fused):
            if self.chunks[i].kind == "reference":
                fused[i] *= w.reference_result_factor
        return fused


def fold_renderings(
    hits: Sequence[tuple[int, float]], chunks: Sequence[Chunk], filters: SearchFilters
) -> list[tuple[int, float]]:
    """A ranking whose twins already stand for their parents, each parent once, at the better
    place of itself and its twins (the places after it close up)."""
    seen: set[int] = set()
    ranking = []
    for i, score in hits:
        if i not in seen and _accepts(filters, chunks, i):
            seen.add(i)
            ranking.append((i, score))
    return ranking


def _accepts(filters: SearchFilters, chunks: Sequence[Chunk], i: int) -> bool:
    # Without filters a chunk is not read at all (a table read on demand decodes it).
    return not filters.active or filters.accepts(chunks[i])


def _parent(position: int | None) -> int | None:
    """A rendering index's parent position; ``None`` (in memory) or -1 (saved) for an original."""
    return None if position is None or position < 0 else int(position)


def _folded_list(value: object) -> list[str]:
    return [normalize_text(v) for v in decode_list(value)]


def build_tables(
    generation: Generation,
    stored: Iterable[Chunk],
    *,
    root: Path | None = None,
    register: Callable[[list[Term]], object] | None = None,
    source: ChunkStore | None = None,
) -> SearchTables:
    """The chunk table and lexical indexes of the chunks read from the store, streamed into
    files (``retriever.table_build``) and opened read on demand: saved under ``root`` when
    they are the generation's, else in a temporary folder. ``register`` receives the
    passages' definitions before any text is tokenized (``glossary_of`` registers them).
    ``source``: the store, so a generation's tables are updated from the newest saved ones."""
    return build_saved(root, generation, stored, register=register, source=source)


def current_tables(
    store: ChunkStore, generation: Generation | None = None
) -> tuple[SearchTables, Glossary]:
    """The index's current generation as a searcher needs it, with its glossary: the tables
    another process saved for it, else built from the store and saved for the next one (one
    process builds them; another that needs them meanwhile waits for its tables).
    ``generation``: the one about to be published instead (``nenqa docs`` saves its files
    before publishing it)."""
    root = snapshots_dir(store.settings.index_dir)
    # The generation first: chunks written after it are at worst a newer generation's, which
    # the server's watcher then loads again (and never saved under this one).
    generation = generation or store.generation()
    tables = load_tables(root, generation)
    if tables is None:
        with one_builder(root, generation):
            # Another process may have built and saved them while this one waited.
            tables = load_tables(root, generation)
            if tables is None:
                return _build_current(store, root, generation)
    return tables, glossary_of(store.settings, tables.definitions)


def _build_current(
    store: ChunkStore, root: Path, generation: Generation
) -> tuple[SearchTables, Glossary]:
    glossaries: list[Glossary] = []

    def register(definitions: list[Term]) -> None:
        # The glossary teaches the tokenizer its words, so it comes before any lexical index.
        glossaries.append(glossary_of(store.settings, definitions))

    try:
        # From the newest saved generation and the change since, where it can (seconds).
        tables = build_tables(
            generation, store.iter_chunks(), root=root, register=register, source=store
        )
    except OSError as error:  # the index folder cannot take the tables: only this process's
        log.warning("could not save the search tables in %s (%s); building them aside", root, error)
        glossaries.clear()
        tables = build_tables(generation, store.iter_chunks(), register=register)
    return tables, glossaries[-1]


def build_glossary(settings: Settings, chunks: Iterable[Chunk] = ()) -> Glossary:
    """The curated table plus the definitions the indexed passages spell out."""
    definitions = [
        term
        for chunk in chunks
        if chunk.kind == "passage" and chunk.rendering_of is None
        for term in harvest_definitions(chunk.text)
    ]
    return glossary_of(settings, definitions)


def glossary_of(settings: Settings, definitions: Sequence[Term]) -> Glossary:
    """The curated table plus ``definitions``, their Chinese forms taught to the tokenizer."""
    terms = []
    table = settings.data_dir / "glossary.tsv"
    if table.exists():
        terms.extend(load_glossary_table(table))
    # A definition the corpus repeats is one term (at 100k chunks, tens of thousands of copies).
    terms.extend(dict.fromkeys(definitions))
    register_terms(form for term in terms for form in term.zh)
    return Glossary(terms)


def load_searcher(settings: Settings) -> HybridSearcher:
    """Open the index and load the model once; raises ``IndexUnavailableError`` if empty."""
    embedder = load_embedder(settings)
    store = ChunkStore(settings, ChromaEmbeddingFunction(embedder), embedder.model_id)
    if store.count() == 0:
        raise IndexUnavailableError(
            f"the index at {settings.chroma_url or settings.index_dir} is empty; "
            "run `nenqa ingest` first"
        )
    tables, glossary = current_tables(store)
    return HybridSearcher(
        store,
        embedder,
        glossary,
        tables=tables,
        dense_candidates=settings.dense_candidates,
        lexical_candidates=settings.lexical_candidates,
        default_k=settings.top_k,
    )
