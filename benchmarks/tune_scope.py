"""Scope and abstention on eval/scope_questions.jsonl: measure the product, or tune the scope.

The set holds near-domain questions the review does not cover (``out_of_scope``) and
paraphrases of what it does cover in words it does not use (``answerable``), each with its
half (``tune`` / ``test``: a hash of the id, written into the file before any result was seen).

    .venv/bin/python benchmarks/tune_scope.py measure [--label before] [--out benchmarks/out]
    .venv/bin/python benchmarks/tune_scope.py tune [--out benchmarks/out]
    .venv/bin/python benchmarks/tune_scope.py probe [--probe-out F]
    .venv/bin/python benchmarks/tune_scope.py sweep --field en_common_zipf --values 99,3.3

Each takes ``--exclude-batches 15``: those scope-set batches are left out (a fresh batch kept
out of every fit and look until its one measurement).

``measure`` answers every question with the extractive mode and prints, per half, kind and
language, the share abstained (out of scope: should be 1; answerable: should be 0).
``tune`` chooses the scope thresholds (``answer.scope.ScopeThresholds``) on the tune half only
(the scope set's tune half and the eval set's answerable items hashing to it), by a grid over
how entity-like an unknown word must be, and reports both halves; the chosen values are then
written into ``ScopeThresholds`` by hand. ``probe`` fits the scope probe
(``answer.scope_probe``) on the tune half by cross-validation and writes
``data/scope_probe.json`` (``probe``'s docstring says how it chooses).
Needs an index (``NENQA_INDEX_DIR``; ``nenqa ingest`` first).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eval.qa_schema import batch_of, half_of  # noqa: E402

SCOPE_SET = ROOT / "eval" / "scope_questions.jsonl"
EVAL_SET = ROOT / "eval" / "qa.jsonl"
# The grid ``tune`` searches: the highest log-probability of a rare unknown English word under the
# embedding tokenizer's unigram model, the shared first
# letters that make it a form of a corpus word, whether an unknown word before a disease head
# noun counts, the highest jieba frequency of an unknown Chinese noun, and which jieba noun
# classes count.
LOGPROB_GRID = (-24.0, -26.0, -28.0, -30.0, -32.0, -35.0, -40.0, -999.0)
STEM_GRID = (5, 6, 7, 99)
MODIFIER_GRID = (False, True)
FREQUENCY_GRID = (-1, 50, 100, 200, 300, 500, 1000)
# The share of answerable tune questions a point may make abstain: half issue 13's target
# (<= 0.03), a margin for questions never seen; within it, the most out-of-scope ones caught.
ANSWERABLE_BUDGET = 0.015
ZH_LOGPROB_GRID = (-999.0, -40.0, -35.0, -32.0, -30.0, -28.0)
MEASURES_GRID = (False, True)
DERIVED_GRID = (False, True)
FRAGMENT_GRID = (False, True)
NOUN_CLASSES_GRID = (
    frozenset({"n"}),
    frozenset({"n", "nrt"}),
    frozenset({"n", "nz", "nrt"}),
    frozenset({"n", "nz", "nrt", "nr", "ns"}),
)


def load_scope_set(path: Path = SCOPE_SET) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def abstention_table(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Share abstained per ``half/kind``, ``half/kind/lang`` and ``half/kind/batch``, with the
    counts. Batches 2 and 3 (ids ``oos2-``, ``ans3-``...) were each written after the earlier
    batches' results were known and before any change they were measured on."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        batch = f"batch{batch_of(row['id'])}"
        for key in (
            f"{row['split']}/{row['kind']}",
            f"{row['split']}/{row['kind']}/{row['lang']}",
            f"{row['split']}/{row['kind']}/{batch}",
        ):
            groups[key].append(row["abstained"])
    return {
        key: {"abstained": round(sum(v) / len(v), 3), "n": len(v)}
        for key, v in sorted(groups.items())
    }


def print_table(table: dict[str, dict[str, float]]) -> None:
    print(f"{'group':<32} | {'abstained':>9} | {'n':>3}")
    for key, cell in table.items():
        print(f"{key:<32} | {cell['abstained']:>9} | {cell['n']:>3}")


def load_product(**settings):
    from nenqa.settings import Settings
    from server.state import load_service

    return load_service(Settings(**settings))


def measure(args: argparse.Namespace) -> None:
    service = load_product()
    answerer = service.answerer("extractive")
    rows = []
    for item in kept(load_scope_set(), args):
        answer = answerer.answer(asked(item))
        rows.append({**item, "abstained": answer.abstained, "answer": answer.text})
    table = abstention_table(rows)
    print_table(table)
    wrong = [
        r for r in rows if r["abstained"] != (r["kind"] == "out_of_scope") and r["split"] == "tune"
    ]
    print(f"tune items decided wrongly: {len(wrong)}")
    for row in wrong:
        print(f"  {row['id']}: {row['question']}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"scope_{args.label}.json"
    path.write_text(
        json.dumps({"table": table, "rows": rows}, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    print(f"wrote {path}")


def tuning_items() -> list[dict]:
    """The scope set, plus the eval set's items (with their half by the same hash), so that no
    threshold is chosen that makes an answerable eval question abstain or answers an
    out-of-scope one."""
    items = load_scope_set()
    for line in EVAL_SET.read_text(encoding="utf-8").splitlines():
        row = json.loads(line) if line else None
        if row:
            items.append(
                {
                    "id": row["id"],
                    "split": half_of(row["id"]),
                    "lang": row["lang"],
                    "kind": "eval_answerable" if row["answerable"] else "eval_out_of_scope",
                    "question": row["question"],
                    "history": row["history"],
                }
            )
    return items


def excluded_batches(args: argparse.Namespace) -> set[str]:
    return set(args.exclude_batches.split(",")) if args.exclude_batches else set()


def kept(items: list[dict], args: argparse.Namespace) -> list[dict]:
    """``items`` without the scope-set batches ``--exclude-batches`` leaves out (a fresh batch
    kept out of every fit until it is measured); the eval set's items stay."""
    excluded = excluded_batches(args)
    return [i for i in items if i["kind"].startswith("eval") or batch_of(i["id"]) not in excluded]


def asked(item: dict):
    """An item's question as the product gets it, with the conversation before it."""
    from nenqa.types import Question, Turn

    history = tuple(Turn(t["role"], t["content"]) for t in item.get("history", []))
    return Question(item["question"], history=history)


def retrieved(answerer, items: list[dict]) -> list[dict]:
    """``items`` with each one's question (``asked``) and the extractive mode's retrieval for
    it (``retrieval``)."""
    for item in items:
        item["asked"] = asked(item)
        item["retrieval"] = answerer.searcher.retrieve(item["asked"], answerer.top_k)
    return items


def tune(args: argparse.Namespace) -> None:
    """Score every question once; then, per grid point, abstained = the relevance scores say
    so or the scope check finds an unknown entity. Chosen on the tune half only: among the
    points whose check makes at most ``ANSWERABLE_BUDGET`` of its answerable questions abstain
    that the scores answer, the one catching the most out-of-scope ones (then the fewest
    abstentions, the most conservative). Rare words count as unknown entities here, as they do
    in the product without a probe; with one, ``probe`` then fits which of those questions it
    takes (``ScopeCheck.rare_words``)."""
    from answer.scope import ScopeThresholds

    service = load_product(scope_probe_enabled=False)  # the probe is fit after (``probe``)
    # The extractive mode itself, under the evidence-table wrapper the service hands out.
    answerer = getattr(service.answerer("extractive"), "mode", service.answerer("extractive"))
    scorer = answerer.scorer
    items = retrieved(answerer, kept(tuning_items(), args))
    for item in items:
        relevance = scorer.relevance(item["retrieval"])
        relevance.unknown_entities = []
        item["scores_abstain"] = not relevance.answerable(scorer.config)

    def counts(thresholds: ScopeThresholds, half: str) -> dict[str, tuple[int, int]]:
        scorer.scope.thresholds = thresholds
        tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for item in (i for i in items if i["split"] == half):
            unknown = scorer.scope.unknown_entities(item["question"])
            tally[item["kind"]][0] += item["scores_abstain"] or bool(unknown)
            tally[item["kind"]][1] += 1
        return {kind: (a, n) for kind, (a, n) in tally.items()}

    # The English and the Chinese thresholds decide separately (``latin_unknowns``,
    # ``chinese_unknowns``): each half of the grid is run once per question, and every
    # combination is scored from the two tables.
    default = scorer.scope.thresholds
    english = [
        dict(en_max_logprob=p, en_stem=st, en_disease_modifiers=m)
        for p, st, m in itertools.product(LOGPROB_GRID, STEM_GRID, MODIFIER_GRID)
    ]
    chinese = [
        dict(
            zh_max_frequency=f,
            zh_noun_classes=c,
            zh_max_logprob=lp,
            zh_measures_known=ms,
            zh_derived_known=dv,
            zh_fragment_names=fr,
        )
        for f, c, lp, ms, dv, fr in itertools.product(
            FREQUENCY_GRID,
            NOUN_CLASSES_GRID,
            ZH_LOGPROB_GRID,
            MEASURES_GRID,
            DERIVED_GRID,
            FRAGMENT_GRID,
        )
    ]
    tune_items = [i for i in items if i["split"] == "tune"]

    def flags(points: list[dict], unknowns) -> np.ndarray:
        table = np.zeros((len(points), len(tune_items)), dtype=bool)
        for row, point in enumerate(points):
            scorer.scope.thresholds = replace(default, **point)
            table[row] = [bool(unknowns(item["question"])) for item in tune_items]
        return table

    latin = flags(english, scorer.scope.latin_unknowns)
    han = flags(chinese, scorer.scope.chinese_unknowns)
    scores = np.array([item["scores_abstain"] for item in tune_items])
    answerable = np.array(["answerable" in item["kind"] for item in tune_items])
    out_of_scope = np.array(["out_of_scope" in item["kind"] for item in tune_items])

    # The check's own share is what it adds to the answerable questions the scores refuse.
    refused_by_scores = int((scores & answerable).sum())

    def objective(pair: tuple[int, int]) -> tuple:
        e, z = pair
        abstained = scores | latin[e] | han[z]
        wrongly = int((abstained & answerable).sum())
        caught = int((abstained & out_of_scope).sum())
        added = wrongly - refused_by_scores
        within = added <= ANSWERABLE_BUDGET * answerable.sum()
        point = replace(default, **english[e], **chinese[z])
        # Ties go to the point flagging the fewest words: unsure, the check keeps a question.
        conservative = (
            -point.en_max_logprob,
            -point.en_stem,
            not point.en_disease_modifiers,
            -point.zh_max_frequency,
            -len(point.zh_noun_classes),
            -point.zh_max_logprob,
            point.zh_measures_known,
            point.zh_derived_known,
            not point.zh_fragment_names,
        )
        return (within, caught if within else -wrongly, -wrongly, conservative)

    e, z = max(itertools.product(range(len(english)), range(len(chinese))), key=objective)
    best = replace(default, **english[e], **chinese[z])
    print(f"chosen on the tune half: {best}")
    scorer.scope.thresholds = best
    support, modifiers = choose_support(scorer, items)
    report = {}
    for half in ("tune", "test"):
        report[half] = {k: f"{a}/{n}" for k, (a, n) in counts(best, half).items()}
        print(half, report[half])
    scorer.scope.thresholds = default
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "scope_tune.json"
    chosen = {
        **best.__dict__,
        "zh_noun_classes": sorted(best.zh_noun_classes),
        "support_types": sorted(support),
        "support_modifiers_en": modifiers[0],
        "support_modifiers_zh": modifiers[1],
    }
    path.write_text(json.dumps({"chosen": chosen, "abstained": report}, indent=2), encoding="utf-8")
    print(f"wrote {path}")


SUPPORT_GRID = (
    frozenset(),
    frozenset({"disease"}),
    frozenset({"disease", "site"}),
    frozenset({"disease", "drug"}),
    frozenset({"disease", "drug", "regimen", "trial"}),
    frozenset({"disease", "site", "drug", "regimen", "trial"}),
)


# How many words before a disease's head noun the retrieved evidence must mention, in English
# and in Chinese questions (0: none).
SUPPORT_MODIFIERS_GRID = (0, 1, 2, 3)


def choose_support(scorer, items: list[dict]) -> tuple[frozenset[str], tuple[int, int]]:
    """With the scope thresholds fixed, which glossary types the quoted evidence must mention
    (``ScoringConfig.support_types``, modifiers unchecked), then how many of a disease's
    modifiers in each language (``support_modifiers_en`` / ``_zh``): chosen on the tune half
    like the thresholds, over the retrievals ``tune`` made."""
    default = scorer.config
    types = _choose(
        scorer,
        items,
        {(t,): replace(default, support_types=t) for t in SUPPORT_GRID},
        lambda point: -len(point[0]),
    )[0]
    modifiers = _choose(
        scorer,
        items,
        {
            (en, zh): replace(
                default, support_types=types, support_modifiers_en=en, support_modifiers_zh=zh
            )
            for en, zh in itertools.product(SUPPORT_MODIFIERS_GRID, SUPPORT_MODIFIERS_GRID)
        },
        lambda point: -sum(point),
    )
    scorer.config = default
    print(f"support chosen on the tune half: types {sorted(types)}, modifiers (en, zh) {modifiers}")
    return types, modifiers


def _choose(scorer, items: list[dict], grid: dict[tuple, object], conservative) -> tuple:
    """The grid point with the fewest tune-half answerable abstentions, then the most
    out-of-scope ones, then the most ``conservative``; only the tune half is printed."""
    results = {}
    for point, config in grid.items():
        scorer.config = config
        tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for item in items:
            relevance = scorer.relevance(item["retrieval"])
            tally[item["split"], item["kind"]][0] += not relevance.answerable(config)
            tally[item["split"], item["kind"]][1] += 1
        results[point] = {k: a for (h, k), (a, _) in tally.items() if h == "tune"}
        shown = {k: f"{a}/{n}" for (h, k), (a, n) in sorted(tally.items()) if h == "tune"}
        print(f"{point}: {shown}")

    def objective(point: tuple) -> tuple:
        tune = results[point]
        wrongly = tune.get("answerable", 0) + tune.get("eval_answerable", 0)
        caught = tune.get("out_of_scope", 0) + tune.get("eval_out_of_scope", 0)
        return (-wrongly, caught, conservative(point))

    return max(results, key=objective)


# The probe's regularisation strengths, and the probabilities tried as its threshold.
PROBE_C_GRID = (1.0, 3.0, 10.0, 30.0)
PROBE_THRESHOLD_GRID = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
# For a question whose only unknown words are rare ones (``ScopeCheck.rare_words``).
PROBE_RARE_THRESHOLD_GRID = tuple(round(0.1 + 0.05 * i, 2) for i in range(18))
PROBE_FOLDS, PROBE_SEEDS = 5, 5


class _SilentProbe:
    """Stands in for the probe while it is fit: asked like it, never says out of scope, so each
    item's decision is the other checks' with rare words left to the probe."""

    def threshold_for(self, *, rare_words: bool) -> float:
        return 1.0

    def out_of_scope(self, *_: object) -> float:
        return 0.0


def probe(args: argparse.Namespace) -> None:
    """Fit the scope probe (``answer.scope_probe``) on the tune half and save it.

    Every item (scope set and eval set, both halves, batches not in ``--exclude-batches``) is
    answered without a probe; the masked questions of the tune half are the training set (out of
    scope: 1), each read as its query vector beside the TF-IDF of its character n-grams (the n-grams
    and their IDF taken from the training folds alone) and the share of its wording the corpus holds
    (``answer.scope_probe``). Per regularisation strength, each tune item's probability is the mean
    over ``PROBE_SEEDS`` shuffles of a ``PROBE_FOLDS``-fold cross-validation with whole batches in
    each fold, so no item is scored by weights fit on it or on its writer's other questions.
    The regularisation strength is the one whose held-out probabilities have the lowest log-loss
    (classes weighted alike, as the regression weighs them): a choice read from every item's
    probability, not from the few items near one threshold, which flipped between strengths from one
    refit to the next. For it, the chosen thresholds are the ones catching the most out-of-scope
    tune questions the product answers now while making at most ``ANSWERABLE_BUDGET`` of the
    answerable ones abstain that the product answers now (then the higher thresholds): the probe's
    own share of the error, whatever the other checks already cost. Two thresholds are chosen
    together: one for every question, and one (no higher) for a question whose only unknown words
    are rare ones (``ScopeCheck.rare_words``), which the other checks leave to the probe. The probe
    is refit on the whole tune half with them. Both halves are reported with and without it.
    """
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.utils.class_weight import compute_sample_weight

    from answer.scope_probe import (
        NgramWeights,
        ScopeProbe,
        corpus_coverage,
        ngram_vectorizer,
        probe_text,
    )

    service = load_product(scope_probe_enabled=False)
    answerer = getattr(service.answerer("extractive"), "mode", service.answerer("extractive"))
    scorer, searcher = answerer.scorer, answerer.searcher
    excluded = excluded_batches(args)
    items = kept(tuning_items(), args)
    scorer.probe = _SilentProbe()
    for item in retrieved(answerer, items):
        relevance = scorer.relevance(item["retrieval"])
        item["abstains"] = not relevance.answerable(scorer.config)
        item["rare"] = bool(relevance.rare_words)
    # As the product reads them: glossary names typed with a slip corrected first.
    spelt = [replace(i["asked"], text=scorer.scope.corrected(i["asked"].text)) for i in items]
    texts = np.array([probe_text(q, searcher.glossary) for q in spelt])
    vectors = searcher.embedder.embed_queries(list(texts))
    corpus = scorer.scope.corpus_text
    coverage = np.array([corpus_coverage(text, corpus) for text in texts])
    dense = np.hstack([vectors, coverage])
    out = np.array(["out_of_scope" in i["kind"] for i in items])
    abstains = np.array([i["abstains"] for i in items])
    rare = np.array([i["rare"] for i in items])
    tune = np.array([i["split"] == "tune" for i in items])
    # Folds by batch: each batch is one writer's wording, so a question is scored by weights
    # fit on other writers' questions, as the product meets a new user's.
    groups = np.array([batch_of(i["id"]) if "eval" not in i["kind"] else "eval" for i in items])
    budget = ANSWERABLE_BUDGET * (~out & tune).sum()
    refused_without = int((abstains & ~out & tune).sum())  # by the other checks, on the tune half

    def fit(c: float, rows: np.ndarray):
        """The n-gram vectorizer and the regression, fit on ``rows`` (indices of ``items``)."""
        ngrams = ngram_vectorizer()
        counted = ngrams.fit_transform(texts[rows])
        features = sparse.hstack([sparse.csr_matrix(dense[rows]), counted])
        model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
        return ngrams, model.fit(features.tocsr(), out[rows])

    def predict(fitted, rows: np.ndarray) -> np.ndarray:
        ngrams, model = fitted
        features = sparse.hstack([sparse.csr_matrix(dense[rows]), ngrams.transform(texts[rows])])
        return model.predict_proba(features.tocsr())[:, 1]

    tune_rows = np.flatnonzero(tune)

    def held_out(c: float, seed: int) -> np.ndarray:
        """Each tune item's probability from the fold that left its batch out."""
        folds = StratifiedGroupKFold(PROBE_FOLDS, shuffle=True, random_state=seed)
        probabilities = np.zeros(len(tune_rows))
        for train, test in folds.split(tune_rows, out[tune], groups[tune]):
            probabilities[test] = predict(fit(c, tune_rows[train]), tune_rows[test])
        return probabilities

    balanced = compute_sample_weight("balanced", out[tune])
    losses = {}
    points = []
    for c in PROBE_C_GRID:
        held_out_mean = np.mean([held_out(c, seed) for seed in range(PROBE_SEEDS)], axis=0)
        losses[c] = log_loss(out[tune], held_out_mean, sample_weight=balanced)
        print(f"C={c:<5} held-out log-loss {losses[c]:.4f} (tune half, cross-validated)")
        pairs = itertools.product(PROBE_THRESHOLD_GRID, PROBE_RARE_THRESHOLD_GRID)
        for threshold, rare_threshold in ((t, r) for t, r in pairs if r <= t):
            bar = np.where(rare[tune], rare_threshold, threshold)
            flagged = abstains[tune] | (held_out_mean >= bar)
            wrongly = int((flagged & ~out[tune]).sum())
            added = wrongly - refused_without
            caught = int((flagged & out[tune]).sum())
            print(
                f"C={c:<5} threshold {threshold:.2f} (rare words {rare_threshold:.2f}): "
                f"answerable abstained {wrongly} ({added} by the probe), out of scope abstained "
                f"{caught} (tune half, cross-validated)"
            )
            points.append((c, (added <= budget, caught, threshold, rare_threshold, wrongly)))
    c = min(losses, key=losses.get)
    best = max(point for strength, point in points if strength == c)
    within, caught, threshold, rare_threshold, wrongly = best
    ngrams, fitted = fit(c, tune_rows)
    model_id = searcher.embedder.model_id
    dimensions = vectors.shape[1]
    vocabulary = sorted(ngrams.vocabulary_, key=ngrams.vocabulary_.get)
    chosen = ScopeProbe(
        model_id=model_id,
        weights=fitted.coef_[0][:dimensions].astype(np.float32),
        coverage_weights=fitted.coef_[0][dimensions : dense.shape[1]].astype(np.float32),
        bias=float(fitted.intercept_[0]),
        threshold=threshold,
        rare_threshold=rare_threshold,
        ngrams=NgramWeights(
            tuple(vocabulary),
            ngrams.idf_.astype(np.float32),
            fitted.coef_[0][dense.shape[1] :].astype(np.float32),
        ),
        provenance={
            "fit_by": "benchmarks/tune_scope.py probe",
            "fit_on": "tune half of eval/scope_questions.jsonl and eval/qa.jsonl",
            "excluded_batches": sorted(excluded),
            "items": int(tune.sum()),
            "out_of_scope": int(out[tune].sum()),
            "C": c,
            "cross_validated": {
                "answerable_abstained": wrongly,
                "out_of_scope_abstained": caught,
                "log_loss": round(losses[c], 4),
            },
        },
    )
    print(
        f"chosen on the tune half: C={c}, threshold {threshold}, for rare words "
        f"{rare_threshold} (within budget: {within})"
    )
    flagged = ~abstains & np.array(
        [
            chosen.probability(v, t, corpus) >= chosen.threshold_for(rare_words=r)
            for v, t, r in zip(vectors, texts, rare, strict=True)
        ]
    )
    report = {}
    for half in ("tune", "test"):
        for kind in sorted({i["kind"] for i in items}):
            rows = np.array([i["split"] == half and i["kind"] == kind for i in items])
            before, after = int(abstains[rows].sum()), int((abstains | flagged)[rows].sum())
            report[f"{half}/{kind}"] = {"without": before, "with": after, "n": int(rows.sum())}
            print(f"{half}/{kind}: abstained {before} -> {after} of {int(rows.sum())}")
    chosen.save(args.probe_out)
    print(f"wrote {args.probe_out}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scope_probe_fit.json").write_text(json.dumps(report, indent=2), encoding="utf-8")


def sweep(args: argparse.Namespace) -> None:
    """One scope threshold (``--field``) over ``--values``, judged by the product itself (the
    scope probe on) on the tune half: per value, the tune questions whose unknown words change
    are answered again, and the questions newly abstained on or answered are counted and named.
    For a threshold whose effect the probe changes, which ``tune`` (the probe off) cannot see:
    of the values giving the fewest answerable questions abstained, then the most out-of-scope
    ones, the one in the middle of their range is taken (farthest from where either side
    changes)."""
    from answer.scope import ScopeThresholds

    service = load_product()
    answerer = service.answerer("extractive")
    scope = getattr(answerer, "mode", answerer).scorer.scope
    default = scope.thresholds
    items = [i for i in kept(load_scope_set(), args) if i["split"] == "tune"]

    def decisions(thresholds: ScopeThresholds, item: dict) -> tuple[list[str], bool]:
        scope.thresholds = thresholds
        unknown = scope.unknown_entities(item["question"])
        return unknown, answerer.answer(asked(item)).abstained

    base = {i["id"]: decisions(default, i) for i in items}
    field_type = type(getattr(default, args.field))
    print(f"{args.field}: default {getattr(default, args.field)}")
    for value in args.values.split(","):
        point = replace(default, **{args.field: field_type(value)})
        tally = {"answerable": [0, 0], "out_of_scope": [0, 0]}
        named = []
        for item in items:
            scope.thresholds = point
            if scope.unknown_entities(item["question"]) == base[item["id"]][0]:
                continue
            unknown, abstained = decisions(point, item)
            if abstained != base[item["id"]][1]:
                tally[item["kind"]][0 if abstained else 1] += 1
                named.append(f"  {'abstains' if abstained else 'answered'}: {item['id']} {unknown}")
        print(f"{args.field}={value}: [newly abstained, newly answered] {tally}")
        print("\n".join(named))
    scope.thresholds = default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("measure", "tune", "probe", "sweep"))
    parser.add_argument("--label", default="now")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument(
        "--exclude-batches", default="", help="scope-set batches left out of it all (15)"
    )
    parser.add_argument(
        "--probe-out", type=Path, default=ROOT / "data" / "scope_probe.json", help="probe: where"
    )
    parser.add_argument("--field", default="en_common_zipf", help="sweep: a ScopeThresholds field")
    parser.add_argument("--values", default="99,3.6,3.3,3.0,2.7", help="sweep: its values")
    args = parser.parse_args()
    {"measure": measure, "tune": tune, "probe": probe, "sweep": sweep}[args.command](args)


if __name__ == "__main__":
    main()
