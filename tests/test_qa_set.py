"""The evaluation set is well-formed and faithful to the review it is scored against.

Faithfulness is checked against the review's body (everything before the reference list)
after one repair, ``join_page_breaks``: the PDF extraction breaks words and sentences at page
ends with a blank line (``兰`` / blank / ``瑞肽``, ``6`` / blank / ``个月``). A blank-line gap is
removed when the text before it does not end a sentence or a heading; gaps after sentence-final
punctuation stay, so paragraphs stay apart.

A gold reference counts as attached to a statement when its marker sits in a sentence (split at
``。``) holding one of the item's key facts, or in the sentence just before one that carries no
marker of its own (the review puts the marker on a trial's first sentence, its results follow).

An English item's key facts are the English words of the review's English rendering of the
same fact (``data/nen-drug-trials-review-2022.en.jsonl``): they are checked against the
renderings in the same way, sentence by sentence in the review's order.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from eval.qa_schema import QAItem, QASetError, cited_references, load_qa
from nenqa.settings import PROJECT_ROOT

QA_PATH = PROJECT_ROOT / "eval" / "qa.jsonl"
REVIEW_PATH = PROJECT_ROOT / "data" / "nen-drug-trials-review-2022.md"
RENDERINGS_PATH = PROJECT_ROOT / "data" / "nen-drug-trials-review-2022.en.jsonl"
REFERENCE_LIST_HEADING = "[参 考 文 献]"
SECTION_HEADINGS = ("1 生物治疗", "2 靶向治疗", "3 化疗", "4 免疫治疗", "5 新药研究", "6 总结")

_BLANK_LINE_GAP = re.compile(r"[ \t]*\n[ \t]*\n\s*")
_SENTENCE_END = tuple("。！？.!?；;：:")
_HEADING = re.compile(r"^\d+ \S+$")
_MARKER = re.compile(r"\^\[([\d,，\-–\s]+)\]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def join_page_breaks(text: str) -> str:
    """Rejoin blocks split by a page break: a blank-line gap goes unless the block before ends
    a sentence or is a numbered heading."""
    blocks = _BLANK_LINE_GAP.split(text)
    joined = [blocks[0]]
    for block in blocks[1:]:
        previous = joined[-1].rstrip()
        last_line = previous.rsplit("\n", 1)[-1]
        if previous.endswith(_SENTENCE_END) or _HEADING.match(last_line):
            joined.append(block)
        else:
            joined[-1] = previous + block
    return "\n\n".join(joined)


def marker_numbers(text: str) -> set[int]:
    """Reference numbers of ``^[n]``/``^[n-m]`` markers in review text."""
    return cited_references("".join(f"[{group}]" for group in _MARKER.findall(text)))


@pytest.fixture(scope="module")
def items() -> list[QAItem]:
    return load_qa(QA_PATH)


@pytest.fixture(scope="module")
def review_body() -> str:
    text = REVIEW_PATH.read_text(encoding="utf-8")
    return join_page_breaks(text.split(REFERENCE_LIST_HEADING)[0])


@pytest.fixture(scope="module")
def english_sentences() -> list[str]:
    """The English renderings of the review's sentences, in the review's order."""
    lines = RENDERINGS_PATH.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["en"] for line in lines if line.strip()]


def _printed_in(item: QAItem, review_body: str, english_sentences: list[str]) -> list[str]:
    """The texts an item's key facts are checked against: the review body, or its renderings."""
    return [review_body] if item.lang == "zh" else english_sentences


def test_page_break_repair_rejoins_split_words_but_not_paragraphs():
    text = "予以兰\n\n瑞肽维持，6\n\n个月的PFS率。\n\n1 生物治疗\n\n常用的药物"
    repaired = "予以兰瑞肽维持，6个月的PFS率。\n\n1 生物治疗\n\n常用的药物"
    assert join_page_breaks(text) == repaired


def test_set_is_large_with_unique_ids_and_balanced_languages(items):
    assert len(items) >= 110
    assert len({item.id for item in items}) == len(items)
    languages = Counter(item.lang for item in items)
    assert abs(languages["zh"] - languages["en"]) <= 1, languages


def test_questions_and_answers_are_in_their_declared_language(items):
    wrong = [
        item.id
        for item in items
        if (item.lang == "zh") != bool(_CJK.search(item.question))
        or (item.lang == "en" and _CJK.search(item.gold_answer))
    ]
    assert not wrong, f"language does not match text: {wrong}"


def test_english_items_have_english_key_facts(items):
    chinese = [
        (item.id, fact)
        for item in items
        if item.lang == "en"
        for fact in item.key_facts
        if _CJK.search(fact)
    ]
    assert not chinese, f"English items with Chinese key facts: {chinese}"


def test_category_mix_covers_every_kind_of_question(items):
    counts = Counter(item.category for item in items)
    assert counts["out_of_scope"] >= 10
    assert counts["adversarial"] >= 8
    assert counts["single_fact"] >= 30
    assert counts["comparison"] >= 10 and counts["list"] >= 6
    multi_turn = [item for item in items if item.category == "multi_turn"]
    assert len(multi_turn) >= 8 and all(item.history for item in multi_turn)
    no_marker = [item for item in items if item.category == "no_marker"]
    assert len(no_marker) >= 8 and all(item.gold_refs == [] for item in no_marker)


def test_out_of_scope_items_expect_abstention(items):
    for item in (i for i in items if i.category == "out_of_scope"):
        assert not item.answerable and not item.gold_refs and not item.key_facts, item.id


def test_every_key_fact_is_printed_in_the_review_or_its_rendering(
    items, review_body, english_sentences
):
    missing = [
        (item.id, fact)
        for item in items
        for fact in item.key_facts
        if not any(fact in text for text in _printed_in(item, review_body, english_sentences))
    ]
    assert not missing, f"key facts not in the review body or its English rendering: {missing}"


def test_every_number_in_a_gold_answer_is_printed_in_the_review(items, review_body):
    invented = []
    for item in items:
        prose = re.sub(r"\[[\d,，\-–\s]+\]", " ", item.gold_answer)
        for number in set(_NUMBER.findall(prose)):
            standalone = rf"(?<![\d.]){re.escape(number)}(?!\d|\.\d)"
            if not re.search(standalone, review_body):
                invented.append((item.id, number))
    assert not invented, f"numbers not in the review body: {invented}"


def attributed_sentences(body: str) -> list[tuple[set[int], str]]:
    """Each sentence of the body with the references it is attributed to (see module doc)."""
    attributed = []
    for paragraph in body.split("\n\n"):
        previous: set[int] = set()
        for sentence in re.split(r"(?<=。)", paragraph):
            own = marker_numbers(sentence)
            attributed.append((own or previous, sentence))
            previous = own
    return attributed


def attributed_renderings(sentences: list[str]) -> list[tuple[set[int], str]]:
    """Each English rendering with the references it is attributed to, as for the body."""
    attributed = []
    previous: set[int] = set()
    for sentence in sentences:
        own = marker_numbers(sentence)
        attributed.append((own or previous, sentence))
        previous = own
    return attributed


def test_gold_refs_are_the_markers_beside_the_key_facts(items, review_body, english_sentences):
    by_language = {
        "zh": attributed_sentences(review_body),
        "en": attributed_renderings(english_sentences),
    }
    unattached = [
        (item.id, ref)
        for item in items
        for ref in item.gold_refs
        if not any(
            ref in refs and any(fact in text for fact in item.key_facts)
            for refs, text in by_language[item.lang]
        )
    ]
    assert not unattached, f"gold ref not cited beside any key fact: {unattached}"


def test_no_marker_facts_come_from_sentences_without_a_marker(
    items, review_body, english_sentences
):
    unmarked = {
        "zh": [text for text in re.split(r"(?<=。)", review_body) if not marker_numbers(text)],
        "en": [text for text in english_sentences if not marker_numbers(text)],
    }
    marked_only = [
        (item.id, fact)
        for item in items
        if item.category == "no_marker"
        for fact in item.key_facts
        if not any(fact in text for text in unmarked[item.lang])
    ]
    assert not marked_only, f"no_marker key facts found only in cited sentences: {marked_only}"


def test_gold_refs_cover_most_of_the_reference_list(items):
    covered = {ref for item in items for ref in item.gold_refs}
    assert len(covered) >= 35, sorted(covered)


def test_gold_sections_are_review_headings_and_cover_all_six(items, review_body):
    used = {section for item in items for section in item.gold_sections}
    assert used <= set(SECTION_HEADINGS), used - set(SECTION_HEADINGS)
    assert used == set(SECTION_HEADINGS)
    assert all(f"\n{heading}\n" in review_body for heading in SECTION_HEADINGS)


def _valid_line(item_id: str = "q001") -> dict:
    return {
        "id": item_id,
        "lang": "en",
        "category": "single_fact",
        "question": "What TTF did lanreotide reach in SPINET?",
        "gold_answer": "13.3 months [7].",
        "gold_refs": [7],
        "key_facts": ["13.3"],
        "answerable": True,
    }


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_loader_refuses_invalid_json_naming_file_and_line(tmp_path):
    path = _write_lines(tmp_path / "qa.jsonl", [json.dumps(_valid_line()), '{"id": "q002",'])
    with pytest.raises(QASetError, match=rf"{re.escape(str(path))}:2: not valid JSON"):
        load_qa(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gold_refs": [51]}, "outside 1..50"),
        ({"gold_answer": "13.3 months [8]."}, r"cites \[8\] but gold_refs is \[7\]"),
        ({"category": "out_of_scope", "answerable": False}, "no gold_refs and no key_facts"),
        ({"category": "multi_turn"}, "needs a non-empty history"),
        ({"category": "no_marker"}, "no_marker item must have gold_refs"),
        ({"lang": "fr"}, "lang"),
        ({"source": "copied"}, "source: Extra inputs are not permitted"),
    ],
)
def test_loader_refuses_schema_violations_naming_the_line(tmp_path, change, message):
    bad = {**_valid_line("q002"), **change}
    path = _write_lines(tmp_path / "qa.jsonl", [json.dumps(_valid_line()), json.dumps(bad)])
    with pytest.raises(QASetError, match=rf"qa\.jsonl:2: .*{message}"):
        load_qa(path)


def test_loader_refuses_a_repeated_id(tmp_path):
    line = json.dumps(_valid_line())
    path = _write_lines(tmp_path / "qa.jsonl", [line, line])
    with pytest.raises(QASetError, match=r"qa\.jsonl:2: id 'q001' already used on line 1"):
        load_qa(path)


def test_loader_accepts_a_well_formed_multi_turn_item(tmp_path):
    turn = {
        **_valid_line(),
        "category": "multi_turn",
        "question": "And placebo?",
        "history": [
            {"role": "user", "content": "SPINET lanreotide TTF?"},
            {"role": "assistant", "content": "13.3 months [7]."},
        ],
    }
    [item] = load_qa(_write_lines(tmp_path / "qa.jsonl", [json.dumps(turn)]))
    assert [t.role for t in item.history] == ["user", "assistant"]
