"""The bilingual glossary: table loading, harvested definitions, query expansion."""

import pytest

from nenqa.errors import MalformedRecordError
from nenqa.glossary import Glossary, Term, load_glossary_table
from retriever.glossary import harvest_definitions


def test_harvests_the_reviews_inline_definitions():
    text = (
        "兰瑞肽组的治疗失败时间(time to treatment failure, TTF)为13.3个月。"
        "常用的生物治疗药物为长效生长抑素类似物(somatostatin analogue, SSA)，包括长效奥曲肽。"
    )
    pairs = {(t.zh[0], t.en[0], t.abbr[0]) for t in harvest_definitions(text)}
    assert ("治疗失败时间", "time to treatment failure", "TTF") in pairs
    assert ("长效生长抑素类似物", "somatostatin analogue", "SSA") in pairs


@pytest.mark.parametrize(
    ("text", "head"),
    [
        # A year or an edition before the term is no part of it (a corpus that varies the year
        # harvested one term per year, each a lexical expansion of every question naming WHO).
        ("根据2019年第5版世界卫生组织(World Health Organization, WHO)分类", "世界卫生组织"),
        (
            "2020年美国国立综合癌症网络(National Comprehensive Cancer Network, NCCN)",
            "美国国立综合癌症网络",
        ),
        # Digits of a Latin name are part of the term.
        ("增殖指数Ki-67指数(Ki-67 index)升高", "增殖指数Ki-67指数"),
    ],
)
def test_a_number_before_a_definition_stays_out_of_its_term(text, head):
    assert [t.zh[0] for t in harvest_definitions(text)] == [head]


def test_expansion_bridges_both_directions():
    glossary = Glossary(
        [
            Term(("兰瑞肽",), ("lanreotide",), ("LAN",), "drug"),
            Term(("依托泊苷+卡铂",), ("etoposide plus carboplatin",), ("EC",), "regimen"),
        ]
    )
    assert "兰瑞肽" in glossary.expand("What did SPINET show for Lanreotide?")
    assert "lanreotide" in glossary.expand("兰瑞肽在肺类癌中的疗效")
    # Short abbreviations only match as written, so the word "economic" or "ec" stays out.
    assert glossary.expand("EC regimen in SCLC")
    assert not glossary.expand("an economic analysis, ec")


def test_malformed_table_is_refused_with_file_and_line(tmp_path):
    table = tmp_path / "glossary.tsv"
    table.write_text("zh\ten\tabbr\ttype\n兰瑞肽\tlanreotide\tLAN\tdrug\n奥曲肽\toctreotide\n")
    with pytest.raises(MalformedRecordError, match=r"glossary.tsv:3: expected 4 columns"):
        load_glossary_table(table)
    table.write_text("zh\ten\tabbr\ttype\n兰瑞肽\tlanreotide\tLAN\tpotion\n")
    with pytest.raises(MalformedRecordError, match=r"glossary.tsv:2: unknown type 'potion'"):
        load_glossary_table(table)


def test_the_longest_matching_term_wins():
    glossary = Glossary(
        [
            Term((), ("CLARINET",), ("CLARINET OLE",), "trial"),
            Term((), ("CLARINET FORTE",), (), "trial"),
            Term(("兰瑞肽",), ("lanreotide",), (), "drug"),
        ]
    )
    matched = glossary.matches("CLARINET FORTE 兰瑞肽增量")
    assert [t.en[0] for t in matched] == ["CLARINET FORTE", "lanreotide"]
    assert "CLARINET OLE" not in glossary.expand("CLARINET FORTE 兰瑞肽增量")
    assert [t.en[0] for t in glossary.matches("CLARINET and CLARINET FORTE")] == [
        "CLARINET",
        "CLARINET FORTE",
    ]
