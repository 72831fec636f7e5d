"""A glossary name typed with a slip is that name: one letter off in English, a homophone in
Chinese; different drugs a letter or a character apart stay different."""

from __future__ import annotations

import pytest

from answer.misspelling import Misspellings, one_edit

FORMS = [
    "lanreotide",
    "everolimus",
    "兰瑞肽",
    "依维莫司",
    "阿昔替尼",
    "达拉非尼",
    "KEYNOTE-158",
    "TMZ",
]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("lantreotide", "lanreotide", True),  # inserted
        ("everolimus", "everolims", True),  # dropped
        ("everolimus", "everolimos", True),  # changed
        ("everolimus", "evreolimus", True),  # swapped
        ("everolimus", "everolimus", False),  # the same word is no slip
        ("octreotide", "lanreotide", False),
        ("everolimus", "evrolimos", False),  # two slips
    ],
)
def test_one_edit_is_exactly_one_letter_inserted_dropped_changed_or_swapped(a, b, expected):
    assert one_edit(a, b) is expected
    assert one_edit(b, a) is expected


@pytest.mark.parametrize(
    ("word", "form"),
    [
        ("Lantreotide", "lanreotide"),
        ("everolimous", "everolimus"),
        # Trial numbers and short codes stay distinct: KEYNOTE-159 is another trial.
        ("KEYNOTE-159", None),
        ("TMX", None),
        ("兰锐肽", "兰瑞肽"),
        ("依维莫斯", "依维莫司"),
        # Apatinib and sorafenib are a character from axitinib and dabrafenib, and read apart.
        ("阿帕替尼", None),
        ("索拉非尼", None),
    ],
)
def test_a_slip_is_the_glossary_name_and_another_drug_is_not(word, form):
    names = Misspellings(FORMS)
    found = names.chinese(word) if not word.isascii() else names.latin(word)
    assert found == form
