"""The bilingual glossary: well formed, grounded in the review, covering every trial and drug."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import pytest

from ingest.trials import load_trials
from nenqa.glossary import Glossary, load_glossary_table
from nenqa.settings import PROJECT_ROOT
from nenqa.types import TrialRecord
from tests.test_trials import REVIEW_PATH, TRIALS_PATH, review_match_form

GLOSSARY_PATH = PROJECT_ROOT / "data" / "glossary.tsv"
HEADER = ["zh", "en", "abbr", "type"]
TYPES = {"drug", "regimen", "trial", "endpoint", "disease", "site", "biomarker", "class", "other"}
ROMAN_PHASE = re.compile(r"[IV]+B?(?:/[IV]+)?")


@dataclass(frozen=True)
class GlossaryRow:
    line: int
    zh: str
    en: tuple[str, ...]
    abbr: tuple[str, ...]
    type: str

    @property
    def forms(self) -> set[str]:
        """Every English form and abbreviation, lower-cased, as a query would be matched."""
        return {f.lower() for f in (*self.en, *self.abbr)}


def split_forms(field: str) -> tuple[str, ...]:
    return tuple(field.split("|")) if field else ()


@pytest.fixture(scope="module")
def raw_lines() -> list[str]:
    return GLOSSARY_PATH.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def rows(raw_lines: list[str]) -> list[GlossaryRow]:
    return [
        GlossaryRow(number, zh, split_forms(en), split_forms(abbr), kind)
        for number, (zh, en, abbr, kind) in enumerate(
            (line.split("\t") for line in raw_lines[1:]), start=2
        )
    ]


@pytest.fixture(scope="module")
def review_body() -> str:
    """The review before its reference list, NFKC-normalised (full-width brackets -> ASCII)."""
    text = REVIEW_PATH.read_text(encoding="utf-8").split("[参 考 文 献]")[0]
    return unicodedata.normalize("NFKC", text)


@pytest.fixture(scope="module")
def trials() -> list[TrialRecord]:
    return load_trials(TRIALS_PATH)


def test_tsv_has_the_header_and_four_columns_on_every_line(raw_lines: list[str]) -> None:
    assert raw_lines[0].split("\t") == HEADER
    assert [n for n, line in enumerate(raw_lines, 1) if len(line.split("\t")) != 4] == []


def test_rows_have_a_known_type_and_an_english_form(rows: list[GlossaryRow]) -> None:
    assert [r.line for r in rows if r.type not in TYPES] == []
    assert [r.line for r in rows if not r.en] == []
    blank_forms = [r.line for r in rows for f in (*r.en, *r.abbr) if f != f.strip() or not f]
    assert blank_forms == []


def test_each_chinese_term_is_listed_once(rows: list[GlossaryRow]) -> None:
    terms = [r.zh for r in rows if r.zh]
    assert sorted({t for t in terms if terms.count(t) > 1}) == []


def test_every_chinese_term_occurs_in_the_review(rows: list[GlossaryRow]) -> None:
    """Each row's first Chinese name as the review prints it, or, for a term the review writes
    only in Latin letters (STZ, belzutifan), one of its English forms or abbreviations; further
    Chinese names (brands: 可瑞达, 善龙) belong to a row grounded so."""
    review = review_match_form(REVIEW_PATH.read_text(encoding="utf-8"))
    lowered = review.lower()

    def in_review(row: GlossaryRow) -> bool:
        first = review_match_form(split_forms(row.zh)[0])
        return first in review or any(
            re.search(rf"(?<![a-z]){re.escape(review_match_form(f))}", lowered) for f in row.forms
        )

    assert [r.zh for r in rows if r.zh and not in_review(r)] == []


def test_both_chinese_names_of_durvalumab_and_tremelimumab_are_known(
    rows: list[GlossaryRow],
) -> None:
    """The review names each drug twice (德瓦鲁单抗/度伐利尤单抗, 曲美木单抗/替西木单抗)."""
    for inn in ("durvalumab", "tremelimumab"):
        assert len({r.zh for r in rows if r.type == "drug" and inn in r.forms}) == 2


def test_every_trial_name_is_in_the_glossary(
    rows: list[GlossaryRow], trials: list[TrialRecord]
) -> None:
    """Named trials by their full name; descriptive names by each acronym they contain."""
    forms = {f for r in rows for f in r.forms}
    words = forms | {w for f in forms for w in f.split()}
    missing = []
    for trial in trials:
        tokens = [t.strip("().,;") for t in trial.name.split()]
        if all(re.search(r"[A-Z0-9]", t) for t in tokens):
            missing += [trial.name] if trial.name.lower() not in forms else []
            continue
        acronyms = [
            t for t in tokens if len(re.findall(r"[A-Z]", t)) >= 2 and not ROMAN_PHASE.fullmatch(t)
        ]
        missing += [a for a in acronyms if a.lower() not in words]
    assert missing == []


def test_every_trial_drug_pairs_zh_and_en_as_the_glossary_does(
    rows: list[GlossaryRow], trials: list[TrialRecord]
) -> None:
    mismatched = []
    for trial in trials:
        for arm in trial.arms:
            for zh, en in zip(arm.drugs_zh, arm.drugs_en, strict=True):
                entries = [r for r in rows if zh in split_forms(r.zh) or zh.lower() in r.forms]
                english = {f for r in entries for f in r.forms}
                if not any(en.lower() in form for form in english):
                    mismatched.append((trial.id, zh, en))
    assert mismatched == []


def test_every_abbreviation_the_review_defines_is_in_the_glossary(
    rows: list[GlossaryRow], review_body: str
) -> None:
    """Each "(somatostatin analogue, SSA)" in the review has a row with that abbr and English."""
    definitions = re.findall(r"\(([A-Za-z][^()]*?), ?([A-Za-z0-9-]+)\)", review_body)
    assert len(definitions) > 20
    missing = [
        (english, abbr)
        for english, abbr in set(definitions)
        if not any(abbr in r.abbr and english.lower() in r.forms for r in rows)
    ]
    assert missing == []


def test_every_regimen_abbreviation_maps_to_the_reviews_chinese_regimen(
    rows: list[GlossaryRow], review_body: str
) -> None:
    """ "卡培他滨联合替莫唑胺(CAPTEM)" in the review -> a regimen row CAPTEM with that Chinese."""
    defined = re.findall(r"([\u4e00-\u9fff+]+)\(([A-Z]{2,})\)", review_body)
    assert len(defined) >= 4
    regimens = {a: r.zh for r in rows if r.type == "regimen" for a in r.abbr}
    wrong = [
        (chinese, abbr)
        for chinese, abbr in defined
        if not (regimens.get(abbr) and chinese.endswith(regimens[abbr]))
    ]
    assert wrong == []


def test_misspelt_folforinox_expands_like_folfirinox(rows: list[GlossaryRow]) -> None:
    assert [r.line for r in rows if "folforinox" in r.forms] == [
        r.line for r in rows if "folfirinox" in r.forms
    ]


def test_clinicians_shorthand_names_the_checkpoint_inhibitors_and_bevacizumab() -> None:
    glossary = Glossary(load_glossary_table(GLOSSARY_PATH))

    def named(text: str) -> set[str]:
        return {t.en[0] for t in glossary.matches(text)}

    assert {"nivolumab", "ipilimumab"} <= named("nivo+ipi in NEC")
    assert {"durvalumab", "tremelimumab"} <= named("Durva/treme in NEN")
    assert {"atezolizumab", "bevacizumab"} <= named("atezo plus bev")
    assert "pembrolizumab" in named("K药治疗NET") and "nivolumab" in named("O药加Y药")
    # Whole words only: a shorthand inside another word names nothing.
    assert named("a bevelled edge, nivolumab-naive") == {"nivolumab"}


def test_common_abbreviations_and_other_names_of_drugs_stages_and_sites_name_their_terms() -> None:
    glossary = Glossary(load_glossary_table(GLOSSARY_PATH))

    def named(text: str) -> set[str]:
        return {t.en[0] for t in glossary.matches(text)}

    assert "temozolomide" in named("CAPTEM对比TEM单药") and "temozolomide" in named("TMZ alone")
    assert "small cell lung cancer" in named("atezolizumab in ES-SCLC")
    assert "colorectal neuroendocrine carcinoma" in named("BRAF in CRC-NEC")
    # Surufatinib's earlier name, and the bronchus as the lung's (bronchial carcinoids).
    assert "surufatinib" in named("sulfatinib in pNET") and "lung" in named("bronchial carcinoids")
    # Short abbreviations match as written: the word "tem" in a sentence names nothing.
    assert "temozolomide" not in named("a totem pole")
