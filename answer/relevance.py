"""How well retrieved evidence answers a question, sentence by sentence; decides abstention.

Both answer modes score once per answer with ``SentenceScorer.relevance(retrieval)``: the
extractive mode quotes the best sentences, the llm mode shows them to the model; both abstain
(``abstention``) when the evidence does not answer.

Each sentence of the retrieved chunks is scored by
``similarity + overlap_weight * overlap + rank_weight / (1 + chunk rank)``: ``similarity`` is the
cosine of the retrieval's query vector (the question with the conversation's earlier user turns
and the glossary expansions, as the searcher embedded it) and the sentence under the retrieval
embedder, ``overlap`` the IDF-weighted share of the question's corpus words the sentence
contains, the glossary's other-language forms counting for their terms. The question is
answerable only when the best sentence reaches both ``min_similarity`` and ``min_overlap`` (or
covers every specific word at ``strong_min_similarity``) and the question names no entity the
review never mentions (``ScopeCheck``), unless such entities sit in a part of their own beside a
part about a covered drug or trial: that part is answered and the rest named. A disease the
question names must also be mentioned where its best sentences come from (their chunks and
renderings), and every word narrowing a disease before its head noun must be somewhere in the
retrieved chunks: sunitinib's passages never say renal cell carcinoma. A question that would be
answered, in part too, is last shown to the scope probe (``answer.scope_probe``), which abstains
on one asking what the review never discusses in words it knows (mouth ulcers on everolimus,
vaccines, cost).
A follow-up naming no trial or treatment asks about those of the previous user turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from answer.base import abstention_text
from answer.scope import ScopeCheck
from answer.scope_probe import ScopeProbe
from answer.sentences import SentenceBank
from nenqa.glossary import Glossary, Term, normalize_text
from nenqa.text import singular
from nenqa.types import Answer, Evidence, Question, Retrieval
from retriever.lexical import tokenize
from retriever.search import HybridSearcher

_NUMBER_TOKEN = re.compile(r"^[\d.]+$")
# Glossary types that name what a patient is given.
TREATMENT_TYPES = frozenset({"drug", "regimen"})
# What a question is about, as opposed to the population or endpoint it asks for.
_SUBJECT_TYPES = TREATMENT_TYPES | {"trial"}
# A neuroendocrine neoplasm (NEN) is a tumour (NET) or a carcinoma (NEC), the review's own
# definition: evidence on 胃肠胰NEN is about a question on 胃肠胰NET, and quotes its population.
# A carcinoid is the older name of a well-differentiated NET (the review's SPINET sentence says
# 肺典型/非典型类癌, its LUNA sentence 肺和胸腺NET): evidence on NET is about a carcinoid.
_UMBRELLA_CLASS = (
    (re.compile(r"(?<![a-z])ne[tc](?![a-z])"), "nen"),
    (re.compile(r"\b(?:tumou?rs?|carcinomas?)\b"), "neoplasm"),
    (re.compile(r"类癌"), "神经内分泌瘤"),
    (re.compile(r"\bcarcinoids?\b"), "neuroendocrine tumor"),
    # The pancreas, stomach, bowel and rectum are gastroenteropancreatic sites: evidence on
    # 胃肠胰NET (GEP-NET) is about a question on 胰腺NET.
    (
        re.compile(r"^(?:胰腺|胃|小肠|十二指肠|直肠|结直肠|胃肠|中肠)(?=ne[tcn]|神经内分泌)"),
        "胃肠胰",
    ),
    (
        re.compile(
            r"^(?:pancreatic|gastric|duodenal|small[- ](?:intestinal|bowel)|rectal|colorectal"
            r"|gastrointestinal|midgut)(?= (?:ne[tcn]|neuroendocrine)\b)"
        ),
        "gastroenteropancreatic",
    ),
)


@dataclass(frozen=True)
class ScoringConfig:
    """Sentence scoring, selection and abstention parameters (calibrated on ``eval/qa.jsonl``)."""

    max_sentences: int = 3
    min_similarity: float = 0.78
    min_overlap: float = 0.20
    overlap_weight: float = 0.25
    rank_weight: float = 0.05
    margin: float = 0.15
    history_weight: float = 0.5
    # A further sentence must cover this share of what the best one covers of the question,
    # so a SPINET question does not also quote the PROMID sentence next to it.
    min_overlap_ratio: float = 0.4
    # A question whose every specific word (a trial name) the best sentence covers is
    # answerable at a lower similarity ("What did the SEQTOR trial find?").
    strong_overlap: float = 0.9
    strong_min_similarity: float = 0.70
    # Glossary types a question names that the chunks of its best sentences (with their
    # renderings) must mention ("sunitinib in renal cell carcinoma": the sunitinib passages
    # never say renal cell carcinoma). Chosen on the tune half (benchmarks/tune_scope.py).
    support_types: frozenset[str] = frozenset({"disease"})
    support_sentences: int = 3
    # How many words before a disease's head noun (renal cell / carcinoma, 膀胱 / 小细胞癌) the
    # retrieved evidence must mention too, in English and in Chinese questions; 0 checks none.
    # Chosen on the tune half like the above.
    support_modifiers_en: int = 2
    support_modifiers_zh: int = 0


@dataclass(frozen=True)
class ScoredSentence:
    """A candidate sentence with its score parts; ``index`` points into the ``SentenceBank``."""

    index: int
    chunk_id: str
    rank: int
    similarity: float
    overlap: float
    score: float


@dataclass
class Relevance:
    """How well the retrieved evidence matches the question; decides abstention."""

    best_similarity: float = 0.0
    best_overlap: float = 0.0
    unknown_entities: list[str] = field(default_factory=list)
    # A part of the question asks about a covered drug or trial, apart from the unknown ones:
    # that part is answered, and the answer names what the review does not discuss.
    answered_in_part: bool = False
    ranked: list[ScoredSentence] = field(default_factory=list)
    # Every folded form of the trials the question names (SPINET; 兰瑞肽 is not a trial).
    named_trials: frozenset[str] = frozenset()
    # Glossary terms the question names that the evidence it would quote never mentions.
    unsupported: list[str] = field(default_factory=list)
    # Diseases the question narrows (renal cell carcinoma) that the same evidence does not.
    narrowed: list[str] = field(default_factory=list)
    # The retrieved chunks, best first: a sentence in two overlapping chunks is in both passages.
    evidence_chunks: tuple[str, ...] = ()
    # Every folded form of the drugs and regimens the question names, with the regimens holding
    # those drugs and the drugs of those regimens (CAPTEM for capecitabine, and back).
    named_treatments: frozenset[str] = frozenset()
    # The scope probe's probability that what the question asks is outside the review (None:
    # not asked, as the question abstains anyway or no probe applies), and its verdict.
    off_topic_probability: float | None = None
    off_topic: bool = False
    # The trials and treatments above are the previous user turn's: the question is a follow-up
    # naming none of its own, so a quote about another trial or treatment answers nothing.
    subject_inherited: bool = False
    # Unknown words of the question that are only rare words (``ScopeCheck.rare_words``) and
    # name nothing else unknown beside them: left to the probe, named if it abstains.
    rare_words: list[str] = field(default_factory=list)

    @property
    def not_covered(self) -> list[str]:
        """What an abstention names: the unknown entities and the narrowed diseases (each once:
        not "breast cancer or receptor-positive breast cancer")."""
        unknown = [normalize_text(u) for u in self.unknown_entities]
        return [
            *self.unknown_entities,
            *(self.rare_words if self.off_topic else ()),
            *(n for n in self.narrowed if not any(u in normalize_text(n) for u in unknown)),
        ]

    @property
    def uncovered(self) -> bool:
        """Whether the scope checks say the review does not cover what is asked, whatever the
        scores (an unknown name not answered in part, an unsupported or narrowed term, the
        probe)."""
        unknown = bool(self.unknown_entities) and not self.answered_in_part
        return unknown or bool(self.unsupported or self.narrowed or self.off_topic)

    def answerable(self, config: ScoringConfig) -> bool:
        if self.uncovered or not self.ranked:
            return False
        top = self.ranked[0]
        covered = top.overlap >= config.strong_overlap
        return (
            self.best_similarity >= config.min_similarity
            and self.best_overlap >= config.min_overlap
        ) or (covered and top.similarity >= config.strong_min_similarity)


class SentenceScorer:
    """Scores the sentences of retrieved evidence against its question (shared by both modes)."""

    def __init__(
        self,
        searcher: HybridSearcher,
        bank: SentenceBank,
        scope: ScopeCheck,
        config: ScoringConfig,
        probe: ScopeProbe | None = None,
    ) -> None:
        self.searcher = searcher
        self.bank = bank
        self.scope = scope
        self.config = config
        self.probe = probe
        scope.learn_glossary(searcher.glossary.terms)
        self._umbrella = umbrella_terms(searcher.glossary.terms)
        self._regimens = regimens_of_drugs(searcher.glossary.terms)
        self._related = related_treatments(self._regimens)

    def relevance(self, retrieval: Retrieval) -> Relevance:
        """Every sentence of the retrieval's evidence scored, best first, with the abstention
        signals; the retrieval's query vector is used as it is (nothing is embedded again)."""
        question = retrieval.question
        candidates: dict[int, tuple[str, int]] = {}
        for rank, item in enumerate(retrieval.evidence):
            for index in self.bank.sentences_of(item.chunk.chunk_id):
                candidates.setdefault(index, (self.bank.quote_chunk(index, item.chunk), rank))
        unknowns = self.scope.unknowns(question.text)
        unknown = [word for word, _ in unknowns]
        rare = [] if any(not only_rare for _, only_rare in unknowns) else unknown
        if rare and self.probe is not None:
            unknown = []  # rare words alone: the probe decides (``ScopeCheck.rare_words``)
        own = self.searcher.glossary.matches(question.text)
        inherited = self._inherited_subject(question, own)
        named = [*own, *inherited]
        relevance = Relevance(
            subject_inherited=bool(inherited),
            unknown_entities=unknown,
            rare_words=rare if not unknown else [],
            answered_in_part=self.scope.answers_in_part(question.text, unknown),
            named_trials=frozenset(
                normalize_text(form)
                for term in named
                if term.type == "trial"
                for form in term.forms
            ),
            evidence_chunks=tuple(item.chunk.chunk_id for item in retrieval.evidence),
            named_treatments=frozenset(
                normalize_text(form)
                for term in named
                if term.type in TREATMENT_TYPES
                for related in self._related.get(term, (term,))
                for form in related.forms
            ),
        )
        if not candidates or retrieval.query_vector is None:
            return relevance
        units = self._query_units(question)
        indices = list(candidates)
        similarities = self.bank.vectors[indices] @ retrieval.query_vector
        scored = []
        for index, similarity in zip(indices, similarities, strict=True):
            chunk_id, rank = candidates[index]
            overlap = self._overlap(units, self.bank.tokens[index])
            score = (
                float(similarity)
                + self.config.overlap_weight * overlap
                + self.config.rank_weight / (1 + rank)
            )
            scored.append(ScoredSentence(index, chunk_id, rank, float(similarity), overlap, score))
        scored.sort(key=lambda s: (-s.score, s.index))
        relevance.ranked = scored
        relevance.best_similarity = max(s.similarity for s in scored)
        relevance.best_overlap = max(s.overlap for s in scored)
        relevance.unsupported, narrowed = self._unsupported(question, own, retrieval, scored)
        if narrowed and self.scope.answers_in_part(question.text, [*unknown, *narrowed]):
            # "everolimus in pancreatic NETs, and in renal cell carcinoma?": the first part is
            # answered, the narrowed disease named like an unknown entity.
            relevance.unknown_entities = [*unknown, *narrowed]
            relevance.answered_in_part = True
        else:
            relevance.narrowed = narrowed
        if self.probe is not None and relevance.answerable(self.config):
            # Asked of what would be answered, in part too (as it was fit: "managing colitis
            # from nivolumab plus ipilimumab … infliximab?" is not a question on the drugs with
            # infliximab named aside): one more query vector, of the masked question.
            # Read with slips of glossary names corrected (兰锐肽), so they are masked too.
            spelt = replace(question, text=self.scope.corrected(question.text))
            probability = self.probe.out_of_scope(
                spelt, self.searcher.glossary, self.searcher.embedder, self.scope.corpus_text
            )
            # A rare word the corpus lacks makes an uncovered subject likelier: the probe's lower
            # threshold for such questions, fit alike (``benchmarks/tune_scope.py probe``).
            threshold = self.probe.threshold_for(rare_words=bool(relevance.rare_words))
            relevance.off_topic_probability = probability
            relevance.off_topic = probability is not None and probability >= threshold
        return relevance

    def _inherited_subject(self, question: Question, own: Sequence[Term]) -> list[Term]:
        """The trials and treatments of the previous user turn, for a follow-up naming none of
        its own ("那安慰剂组呢？" after IMpower133 asks about IMpower133's placebo arm, not
        SPINET's); none otherwise."""
        earlier = [t.content for t in question.history if t.role == "user"][-1:]
        if not earlier or any(t.type in _SUBJECT_TYPES for t in own):
            return []
        return [t for t in self.searcher.glossary.matches(earlier[0]) if t.type in _SUBJECT_TYPES]

    def _unsupported(
        self,
        question: Question,
        matched: Sequence[Term],
        retrieval: Retrieval,
        ranked: Sequence[ScoredSentence],
    ) -> tuple[list[str], list[str]]:
        """The question's glossary terms (``matched``) of ``support_types`` that the chunks of
        its best sentences, and their sentences' renderings, never mention; and its diseases
        narrowed by a word (up to ``support_modifiers_en`` / ``_zh``) that no retrieved chunk
        mentions."""
        terms = [t for t in matched if t.type in self.config.support_types]
        mentions = self.scope.disease_mentions(
            question.text, self.config.support_modifiers_en, self.config.support_modifiers_zh
        )
        if not terms and not mentions:
            return [], []
        best = {s.chunk_id for s in ranked[: self.config.support_sentences]}
        support = self._support_text(retrieval, best)
        missing = [
            t
            for t in terms
            if not any(
                normalize_text(f) in support
                for named in (t, *self._umbrella.get(t, ()))
                for f in named.forms
            )
        ]
        # Metastases named beside a primary disease the evidence holds (胰腺NET … 肝转移) are
        # where that disease spread, not another population.
        spread = {t for t in terms if any("metasta" in form.lower() for form in t.en)}
        if any(t not in spread and t not in missing for t in terms):
            missing = [t for t in missing if t not in spread]
        unsupported = [t.forms[0] for t in missing]
        if not mentions:
            return unsupported, []
        retrieved = self._support_text(retrieval, {e.chunk.chunk_id for e in retrieval.evidence})
        # A modifier inside a term the evidence names in either language (lung / 肺类癌) is held.
        held_terms = [
            normalize_text(f)
            for t in matched
            if any(normalize_text(form) in retrieved for form in t.forms)
            for f in t.forms
        ]
        words = EvidenceWords("\n".join([retrieved, *held_terms]))
        narrowed = []
        for mention in mentions:
            held = (
                m in retrieved or any(m in f for f in held_terms)
                if mention.chinese
                else words.holds(m)
                for m in mention.modifiers
            )
            if not all(held):
                narrowed.append(mention.text)
        return unsupported, narrowed

    def _support_text(self, retrieval: Retrieval, chunk_ids: set[str]) -> str:
        """The retrieved chunks of ``chunk_ids`` and their sentences' renderings, folded."""
        texts = [e.chunk.text for e in retrieval.evidence if e.chunk.chunk_id in chunk_ids]
        for chunk_id in chunk_ids:
            for index in self.bank.sentences_of(chunk_id):
                texts += self.bank.sentences[index].renderings.values()
        return normalize_text("\n".join(texts))

    def _query_units(self, question: Question) -> list[tuple[float, tuple[frozenset[str], ...]]]:
        """What the question asks about, as (weight, alternatives) units a sentence can cover.

        A glossary term the question names is one unit, covered by any of its forms in either
        language (so ``lanreotide`` is covered by ``兰瑞肽``); every other corpus word is a unit of
        its own. Weights are IDF, times ``history_weight`` for words of earlier turns only.
        """
        earlier = [t.content for t in question.history if t.role == "user"]
        earlier = earlier[-self.searcher.weights.history_turns :]
        texts = [*((t, self.config.history_weight) for t in earlier), (question.text, 1.0)]
        units: dict[object, tuple[float, tuple[frozenset[str], ...]]] = {}
        for text, weight in texts:
            claimed: set[str] = set()
            matched = self.searcher.glossary.matches(text)
            combined = self._combinations_named(matched)
            for term in matched:
                forms = tuple(
                    toks
                    for form in term.forms
                    if (toks := frozenset(t for t in tokenize(form) if self.bank.known(t)))
                )
                named = {t for form in term.forms for t in tokenize(form)} & set(tokenize(text))
                claimed |= named
                if not forms:
                    continue
                unit_weight = weight * max(self.bank.idf(t) for toks in forms for t in toks)
                # Drugs the question combines are named where their regimen is (卡培他滨联用
                # 替莫唑胺: CAPTEM): the sentence's tokenizer keeps a regimen whole.
                forms += tuple(
                    toks
                    for regimen in combined.get(term, ())
                    for form in regimen.forms
                    if (toks := frozenset(t for t in tokenize(form) if self.bank.known(t)))
                )
                key = ("term", term.forms)
                if units.get(key, (0.0,))[0] < unit_weight:
                    units[key] = (unit_weight, forms)
            for token in tokenize(text):
                if token in claimed or not self.bank.known(token) or _NUMBER_TOKEN.match(token):
                    continue
                unit_weight = weight * self.bank.idf(token)
                if units.get(token, (0.0,))[0] < unit_weight:
                    units[token] = (unit_weight, (frozenset({token}),))
        return list(units.values())

    def _combinations_named(self, matched: Sequence[Term]) -> dict[Term, tuple[Term, ...]]:
        """Each drug of ``matched`` with the regimens containing two or more of its drugs: the
        question names that combination in other words (nivolumab given with temozolomide)."""
        drugs = [t for t in matched if t.type == "drug"]
        return {
            drug: tuple(
                regimen
                for regimen in self._regimens.get(drug, ())
                if sum(regimen in self._regimens.get(other, ()) for other in drugs) >= 2
            )
            for drug in drugs
        }

    @staticmethod
    def _overlap(
        units: Sequence[tuple[float, tuple[frozenset[str], ...]]], tokens: frozenset[str]
    ) -> float:
        total = sum(weight for weight, _ in units)
        if total <= 0:
            return 0.0
        found = sum(weight for weight, forms in units if any(f <= tokens for f in forms))
        return found / total


def related_treatments(regimens: dict[Term, tuple[Term, ...]]) -> dict[Term, frozenset[Term]]:
    """Each drug or regimen in ``regimens`` (``regimens_of_drugs``) with itself, the regimens
    holding the drug and the drugs of the regimen: a quote naming any of them is about the
    treatment a question names (CAPTEM for capecitabine, and back)."""
    related: dict[Term, set[Term]] = {}
    for drug, held in regimens.items():
        related.setdefault(drug, {drug}).update(held)
        for regimen in held:
            related.setdefault(regimen, {regimen}).add(drug)
    return {term: frozenset(terms) for term, terms in related.items()}


def umbrella_terms(terms: Sequence[Term]) -> dict[Term, tuple[Term, ...]]:
    """Each glossary term naming a NET or NEC (胃肠胰NET, GEP-NEC) with the terms naming the same
    site's NEN (胃肠胰NEN), and a carcinoid with NET: a broader population the evidence may
    report."""
    by_form = {normalize_text(f): term for term in terms for f in term.forms}
    umbrella: dict[Term, tuple[Term, ...]] = {}
    for term in terms:
        broader = set()
        for form in term.forms:
            # Widened by each rule in turn, and by several (胰腺NET, 胃肠胰NET, 胃肠胰NEN).
            folded = normalize_text(form)
            forms, frontier = {folded}, [folded]
            while frontier:
                current = frontier.pop()
                for pattern, wider in _UMBRELLA_CLASS:
                    widened = pattern.sub(wider, current)
                    if widened not in forms:
                        forms.add(widened)
                        frontier.append(widened)
            for widened in forms - {folded}:
                other = by_form.get(widened)
                if other is not None and other != term:
                    broader.add(other)
        if broader:
            umbrella[term] = tuple(broader)
    return umbrella


def regimens_of_drugs(terms: Sequence[Term]) -> dict[Term, tuple[Term, ...]]:
    """Each glossary drug with the regimens one of whose forms names it, as the glossary finds a
    term in any text (卡培他滨 in 卡培他滨联合替莫唑胺, whose forms include CAPTEM): a sentence
    naming the regimen names the drug."""
    regimens = [t for t in terms if t.type == "regimen"]
    found: dict[Term, tuple[Term, ...]] = {}
    for drug in (t for t in terms if t.type == "drug"):
        alone = Glossary([drug])  # no longer name competes: 奥曲肽 is in 长效奥曲肽's regimen too
        containing = tuple(r for r in regimens if any(alone.matches(f) for f in r.forms))
        if containing:
            found[drug] = containing
    return found


def abstention(
    language: str,
    mode: str,
    evidence: Sequence[Evidence],
    timings: dict[str, float],
    *,
    unsupported: tuple[str, ...] = (),
    draft: str = "",
    not_covered: Sequence[str] = (),
    uncovered: bool = False,
) -> Answer:
    """The answer when the evidence does not answer the question: no citations at all.

    ``not_covered`` names what the question asks about that the review never mentions (both
    modes pass ``Relevance.unknown_entities``). ``unsupported`` and ``draft`` are the llm
    mode's, when every sentence the model wrote failed the checks. ``uncovered``: the scope
    checks, not the scores, refused (``Relevance.uncovered``).
    """
    text = abstention_text(language, not_covered)
    return Answer(
        text=text,
        abstained=True,
        mode=mode,  # type: ignore[arg-type]
        language=language,
        segments=(text,),
        evidence=tuple(evidence),
        unsupported=unsupported,
        timings_ms=dict(timings),
        draft=draft,
        uncovered=uncovered,
    )


class EvidenceWords:
    """The English words of the retrieved evidence, holding a question's word in another form
    (tumours / tumour, small-intestinal / small intestine)."""

    def __init__(self, text: str, stem: int = 6) -> None:
        self.words = {w.lower() for w in re.findall(r"[A-Za-z]+", text)}
        self.stem = stem
        self.stems = {w[:stem] for w in self.words if len(w) >= stem}

    def holds(self, word: str) -> bool:
        parts = [p for p in word.lower().split("-") if p]
        return bool(parts) and all(self._holds_part(p) for p in parts)

    def _holds_part(self, part: str) -> bool:
        if part in self.words or singular(part) in self.words:
            return True
        return len(part) >= self.stem and part[: self.stem] in self.stems
