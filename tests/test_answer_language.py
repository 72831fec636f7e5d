"""Which language an answer is written in: the asker's, the question's or the conversation's."""

from __future__ import annotations

import pytest

from answer.base import answer_language
from nenqa.types import Question, Turn


def test_a_chinese_question_is_answered_in_chinese():
    assert answer_language(Question("SPINET研究中兰瑞肽组的TTF是多少？")) == "zh"
    # Drug names and trial names in Latin letters do not make it English.
    assert answer_language(Question("CAPTEM方案在pNET中的ORR是多少？")) == "zh"


def test_an_english_question_is_answered_in_english():
    assert answer_language(Question("What did SPINET show for lanreotide?")) == "en"
    assert answer_language(Question("lenvatinib ORR in pancreatic NET")) == "en"


@pytest.mark.parametrize("follow_up", ["SPINET?", "13.3?", "PFS vs OS?", "mPFS"])
def test_an_ambiguous_follow_up_keeps_the_language_of_the_last_user_turn(follow_up):
    english = (
        Turn("user", "What did the TALENT trial find?"),
        Turn("assistant", "Translated from the review: ... [17]"),
    )
    chinese = (*english, Turn("user", "那安慰剂组呢？"), Turn("assistant", "9.8个月[7]"))
    assert answer_language(Question(follow_up, english)) == "en"
    assert answer_language(Question(follow_up, chinese)) == "zh"
    # The assistant's own words never decide: only what the user wrote.
    assert (
        answer_language(Question(follow_up, (Turn("assistant", "The TTF was 13.3 months"),)))
        == "zh"
    )


@pytest.mark.parametrize(
    "question", ["IMpower133 in ES-SCLC: OS?", "ORR of CAPTEM?", "TTF at 12 mo?", "Is E2211 RCT?"]
)
def test_a_terse_question_with_a_short_english_word_is_english(question):
    assert answer_language(Question(question)) == "en"


def test_an_english_sentence_naming_drugs_in_chinese_is_english_and_the_reverse_chinese():
    question = "Is there a phase 3 trial of 索凡替尼 plus 特瑞普利 as second line for NEC?"
    assert answer_language(Question(question)) == "en"
    assert answer_language(Question("SPINET里用Somatuline治肺类癌，TTF对比placebo多少？")) == "zh"
    assert answer_language(Question("兰瑞肽 in NET?")) == "zh"


def test_an_ambiguous_question_without_a_conversation_is_answered_in_chinese():
    assert answer_language(Question("SPINET?")) == "zh"


def test_the_askers_choice_overrides_detection():
    assert answer_language(Question("SPINET研究中兰瑞肽组的TTF是多少？", language="en")) == "en"
    english_history = (Turn("user", "What did the TALENT trial find?"),)
    assert answer_language(Question("What about CAPTEM?", english_history, language="zh")) == "zh"
