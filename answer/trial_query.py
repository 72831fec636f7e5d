"""Questions about a set of trials: recognised, and what the set is, from the question.

A question asks for a set when it asks *which* (or compares) trials, studies, drugs, regimens
or options, in either language ("Which trials tested checkpoint inhibitors in NEN?",
"哪些研究评估了免疫治疗联合化疗？", "compare the SSA trials"); the cue words were chosen on
the tune half of ``eval/list_questions.jsonl`` (docs/benchmarks.md, issue 16). A question naming
one trial is about that trial, not a set; naming two or more asks to compare them.

What the set is comes from the question: the treatments it names (glossary drugs, regimens and
classes, plus class words such as immunotherapy or targeted therapy), the site, the grade, the
phase, the line of therapy and the setting (ongoing, randomised, retrospective, combination or
monotherapy). Every record that meets all of them is a row (no top-k cut), strongest evidence
first: phase III, then II, I, trials whose phase the review does not state, retrospective
series, case reports; randomised before not within a phase, trials without results last.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ingest.trials import DESIGN_TAGS, DRUG_CLASSES, LINES_OF_THERAPY, SITE_ZH
from nenqa.glossary import Glossary, Term, normalize_text
from nenqa.types import TrialRecord

# --- recognising a question about a set of trials ---------------------------------------------

# What a question about a set asks for: "which/what/list/compare ... trials|drugs|regimens".
_SET_NOUNS_EN = (
    r"trials|studies|drugs|agents|regimens|combinations|options|therapies|treatments|"
    r"inhibitors|antibodies|analogues|analogs|ADCs|ICIs|sequences|evidence"
)
# An auxiliary after a word past the cue makes that word what is asked ("What pathways do the
# targeted agents hit?" asks for pathways, not for a set of agents; "What are the options" does).
_AUXILIARY = r"(?:do|does|did|is|are|was|were|has|have|had)\b"
_ASKS_FOR_SET_EN = re.compile(
    rf"\b(?:which|what|list|name|compare|summari[sz]e|any)\b"
    rf"(?:\W+\S+)??(?:\W+(?!{_AUXILIARY})\S+){{0,5}}?\W+"
    rf"(?:{_SET_NOUNS_EN})\b|\btrials\b.{{0,40}}\btested\b",
    re.IGNORECASE,
)
_SET_NOUNS_ZH = r"研究|试验|药物|药|方案|疗法|治疗|选择|证据|联合"
_ASKS_FOR_SET_ZH = re.compile(
    rf"(?:哪些|哪几项|哪几种|哪几个|有什么|都有什么|列出|列举|汇总|总结一下|比较一下|对比一下)"
    rf"[^？?。，,]{{0,16}}?(?:{_SET_NOUNS_ZH})"
    rf"|(?:{_SET_NOUNS_ZH})[^？?。，,]{{0,16}}?(?:有哪些|有哪几|哪些)"
)
# "which patients / cohort / biomarkers": asks about one study's content, not a set of studies.
_ASKS_WITHIN_A_STUDY = re.compile(
    r"哪些(?:患者|人群|亚组|队列|标志物|不良反应|肿瘤|类型)|哪几类|"
    r"\bwhich (?:patients|cohorts?|subgroups?|tumou?r types?|biomarkers?|classification)\b",
    re.IGNORECASE,
)
# Comparing trials the question names ("TALENT or KEYNOTE-028: which gave the higher ORR?").
_COMPARES = re.compile(
    r"\bcompar\w*|\bversus\b|\bvs\.?|\bdiffer\w*|\bhigher\b|\blower\b|\bbetter\b|\blonger\b|"
    r"比较|对比|哪个|哪项|差别|区别|更高|更好|更长",
    re.IGNORECASE,
)
# A cue in the scope of "beyond / other than / 除…以外" excludes rather than selects.
_EXCLUDING = re.compile(
    r"\b(?:beyond|other than|besides|except|apart from|outside)\b|除了?|以外|之外", re.I
)
_ALL_TRIALS = re.compile(r"\ball (?:the )?(?:trials|studies)\b|所有(?:的)?(?:研究|试验)", re.I)

# --- what the set is: treatments, population, design ------------------------------------------

# Class words the glossary does not hold, and the record classes each stands for.
_CLASS_GROUPS: tuple[tuple[str, str, str, frozenset[str]], ...] = (
    (
        "dual immunotherapy",
        "双免疫",
        r"双免疫|dual (?:immuno|checkpoint)\w*|double immuno\w*|CTLA-?4",
        frozenset({"CTLA-4 inhibitor"}),
    ),
    (
        "immunotherapy",
        "免疫治疗",
        r"免疫治疗|免疫检查点|\bICIs?\b|immunotherap\w*|checkpoint",
        frozenset({"PD-1 inhibitor", "PD-L1 inhibitor", "CTLA-4 inhibitor"}),
    ),
    (
        "PD-1 inhibitor",
        "PD-1抑制剂",
        r"PD-1(?!/)(?:抗体|抑制剂|单抗|\s*(?:antibod|inhibitor|blockade|agent)\w*)|抗PD-1|anti-PD-1",
        frozenset({"PD-1 inhibitor"}),
    ),
    (
        "PD-L1 inhibitor",
        "PD-L1抑制剂",
        r"PD-L1(?:抗体|抑制剂|单抗|\s*(?:antibod|inhibitor|blockade|agent)\w*)|抗PD-L1|anti-PD-L1",
        frozenset({"PD-L1 inhibitor"}),
    ),
    (
        "anti-angiogenic",
        "抗血管生成",
        r"抗血管生成|anti-?angiogen\w*|\bVEGF",
        frozenset({"TKI", "VEGF antibody"}),
    ),
    (
        "targeted therapy",
        "靶向治疗",
        r"靶向(?:治疗|药物|药)|(?<!-)\btargeted (?:therap|drug|agent|treatment)\w*",
        frozenset(
            {
                "TKI",
                "mTOR inhibitor",
                "VEGF antibody",
                "HIF-2α inhibitor",
                "BRAF inhibitor",
                "MEK inhibitor",
                "ATR inhibitor",
            }
        ),
    ),
    (
        "chemotherapy",
        "化疗",
        r"化疗|chemotherap\w*|cytotoxic|细胞毒",
        frozenset({"chemotherapy"}),
    ),
    (
        "SSA",
        "生长抑素类似物",
        r"生物治疗|biotherap\w*|somatostatin analog\w*",
        frozenset({"SSA"}),
    ),
)
# Glossary classes whose words name a group of record classes.
_GLOSSARY_CLASS_ALIASES = {
    "ICI": "immunotherapy",
    "cytotoxic chemotherapy": "chemotherapy",
    "anti-PD-1 antibody": "PD-1 inhibitor",
    "bispecific antibody": "T-cell engager",
    "trispecific antibody": "T-cell engager",
}

# A therapy the question names as what came before ("after EP fails", "一线化疗后进展").
_PRIOR_THERAPY = re.compile(
    r"\bafter\b[^?.,;]{0,40}?\b(?:fail\w*|progress\w*|refractory)\b|\b(?:refractory|resistant) to\b"
    r"[^?.,;]{0,30}|[^，。？?]{0,12}?(?:治疗)?(?:失败|进展)(?:后|的)",
    re.IGNORECASE,
)
_COMBINED = re.compile(
    r"联合|\bplus\b|combin\w*|\bpaired\b|together with|\bwith\b|\+|及|加用|adding", re.I
)
_COMBINATION_SETTING = re.compile(r"combination|联合(?:治疗|方案|用药)|combined regimens?", re.I)
_MONOTHERAPY = re.compile(r"monotherapy|single[- ]agent|\balone\b|单药", re.I)

_GRADES: tuple[tuple[str, str, str, Callable[[set[str]], bool]], ...] = (
    (
        "NEC",
        "NEC",
        r"\bNECs?\b|神经内分泌癌|neuroendocrine carcinomas?|poorly[- ]differentiated|分化差",
        lambda g: "NEC" in g,
    ),
    (
        "high-grade",
        "高级别",
        r"\bG3\b|high[- ]grade|高级别",
        lambda g: bool(g & {"G3", "NEC", "high-grade", "Ki-67>55%"}),
    ),
    (
        "low-grade",
        "低级别",
        r"low[- ]grade|低级别|\bG1\b|\bG2\b|G1/G2|well[- ]differentiated|分化好",
        lambda g: bool(
            g & {"G1", "G2", "Ki-67<10%", "Ki-67≤10%", "Ki-67≤20%", "typical carcinoid"}
        ),
    ),
    (
        "carcinoid",
        "类癌",
        r"类癌|carcinoids?",
        lambda g: any("carcinoid" in x for x in g),
    ),
    (
        "NET",
        "NET",
        r"\bNETs?\b|神经内分泌瘤",
        lambda g: bool(g - {"NEC", "SCLC", "G3", "high-grade", "Ki-67>55%"}),
    ),
    (
        "SCLC",
        "小细胞肺癌",
        r"\bSCLC\b|小细胞肺癌|small[- ]cell lung",
        lambda g: "SCLC" in g,
    ),
)
# A site question about GEP tumours covers trials of their parts.
_SITE_PARTS = {
    "gep": {"gep", "pancreas", "gastrointestinal", "midgut", "duodenum", "rectum"},
    "gastrointestinal": {"gastrointestinal", "midgut", "duodenum", "rectum"},
    "lung": {"lung"},
}
_PHASE_EN = re.compile(r"\bphase\s*(I{1,3}|[123])(?:b|/(?:I{1,3}|[123]))?\b", re.IGNORECASE)
_PHASE_ZH = re.compile(r"(Ⅰ|Ⅱ|Ⅲ|I{1,3})\s*[Bb]?\s*期")
_ROMAN = {"1": "I", "2": "II", "3": "III", "Ⅰ": "I", "Ⅱ": "II", "Ⅲ": "III"}
_LINE_CUES = {
    "first-line": r"first[- ]line|1st[- ]line|front[- ]line|一线",
    "second-line": r"second[- ]line|2nd[- ]line|二线",
    "maintenance": r"maintenance|维持",
    "after progression": r"\bafter\b[^?.]{0,40}\b(?:fail|progress)\w*|refractory|pretreated|"
    r"previously treated|resistant|失败|进展后|难治|耐药|经治",
}
_DESIGN_CUES = {
    "randomised": r"randomi[sz]ed|\bRCTs?\b|随机",
    "retrospective": r"retrospective|回顾性",
    "prospective": r"prospective|前瞻性",
    "ongoing": r"ongoing|recruiting|in progress|underway|正在进行|在研|正在入组|进行中",
    "case report": r"case reports?|个案",
}


@dataclass(frozen=True)
class Criterion:
    """One condition a row must meet, with its label in both languages."""

    kind: str
    label_en: str
    label_zh: str
    test: Callable[[TrialRecord], bool] = field(compare=False)

    def label(self, language: str) -> str:
        return self.label_en if language == "en" else self.label_zh


@dataclass(frozen=True)
class TrialQuery:
    """What a question about a set of trials asks for: named trials or criteria.

    Treatments are combined with AND when the question joins them ("immunotherapy plus
    chemotherapy"), else with OR; criteria of the other kinds: OR within a kind, AND across.
    """

    named: tuple[str, ...] = ()
    criteria: tuple[Criterion, ...] = ()
    all_treatments: bool = False

    def matches(self, record: TrialRecord) -> bool:
        """Whether the record is one of the trials the question asks about."""
        if self.named:
            return record.id in self.named
        kinds: dict[str, list[Criterion]] = {}
        for criterion in self.criteria:
            kinds.setdefault(criterion.kind, []).append(criterion)
        for kind, group in kinds.items():
            passed = [c.test(record) for c in group]
            needed = all if kind == "treatment" and self.all_treatments else any
            if not needed(passed):
                return False
        return True

    def labels(self, language: str) -> tuple[str, ...]:
        """The criteria as the summary names them, in the question's order of kinds."""
        return tuple(dict.fromkeys(c.label(language) for c in self.criteria))


def recognise_trial_query(
    question: str, glossary: Glossary, records: Sequence[TrialRecord]
) -> TrialQuery | None:
    """The set of trials a question asks about, or ``None`` for any other question.

    ``None`` when the question does not ask for a set, names exactly one trial, or asks for a
    set without saying of what (no criterion and no "all trials").
    """
    terms = glossary.matches(question)
    named = _named_trials(question, terms, records)
    if len(named) >= 2 and (asks_for_set(question) or _COMPARES.search(question)):
        return TrialQuery(named=tuple(named))
    if named or not asks_for_set(question):
        return None
    criteria = list(_treatment_criteria(question, terms))
    criteria += _site_criteria(question, terms)
    criteria += _pattern_criteria(question)
    if not criteria and not _ALL_TRIALS.search(question):
        return None
    criteria = _without_qualifying_classes(criteria, records)
    treatments = [c for c in criteria if c.kind == "treatment"]
    joined = len(treatments) >= 2 and bool(_COMBINED.search(_without_prior(question)))
    return TrialQuery(criteria=tuple(criteria), all_treatments=joined)


def _without_qualifying_classes(
    criteria: list[Criterion], records: Sequence[TrialRecord]
) -> list[Criterion]:
    """Drop a treatment that only qualifies a narrower one ("oxaliplatin-based chemotherapy"):
    one whose trials include every trial of another treatment the question names."""
    treatments = [c for c in criteria if c.kind == "treatment"]
    matched = {c.label_en: {r.id for r in records if c.test(r)} for c in treatments}
    broader = {
        b.label_en
        for b in treatments
        for n in treatments
        if n is not b and matched[n.label_en] < matched[b.label_en] and matched[n.label_en]
    }
    return [c for c in criteria if c.kind != "treatment" or c.label_en not in broader]


def asks_for_set(question: str) -> bool:
    """Whether a question asks which (or compares) trials, drugs, regimens or options."""
    if _ASKS_WITHIN_A_STUDY.search(question):
        return False
    return bool(_ASKS_FOR_SET_EN.search(question) or _ASKS_FOR_SET_ZH.search(question))


def _named_trials(
    question: str, terms: Iterable[Term], records: Sequence[TrialRecord]
) -> list[str]:
    """Record ids of the trials the question names (glossary trial terms, names, NCT ids)."""
    forms = {normalize_text(f) for t in terms if t.type == "trial" for f in t.forms}
    named = [
        r.id
        for r in records
        if forms & {normalize_text(n) for n in (r.name, *r.aliases, r.nct or "") if n}
    ]
    named += [i for i in trials_named_in(question, records) if i not in named]
    return _longest_names(named, records)


def trials_named_in(text: str, records: Sequence[TrialRecord]) -> list[str]:
    """Record ids of the trials a text names by name, alias or NCT id ("CLARINET FORTE" names
    that trial, not also CLARINET); a regimen or drug alias ("mFOLFIRINOX") names no trial."""
    folded = normalize_text(text)
    named = [
        r.id
        for r in records
        if any(_whole_word(normalize_text(n), folded) for n in _trial_names(r))
    ]
    return _longest_names(named, records)


def _trial_names(record: TrialRecord) -> list[str]:
    """A record's names that name a trial: Latin, five characters or more, written like a
    trial's name (two capitals or a digit), and not one of its arms or drugs."""
    treatments = {
        normalize_text(x)
        for arm in record.arms
        for x in (arm.label, arm.label_en or "", *arm.drugs_en, *arm.drugs_zh)
    }
    return [
        n
        for n in (record.name, *record.aliases, record.nct or "")
        if len(n) >= 5
        and n.isascii()
        and (sum(c.isupper() for c in n) >= 2 or any(c.isdigit() for c in n))
        and normalize_text(n) not in treatments
    ]


def _longest_names(named: list[str], records: Sequence[TrialRecord]) -> list[str]:
    names = {r.id: normalize_text(r.name) for r in records if r.id in named}
    return [i for i in named if not any(o != i and names[i] in names[o] for o in named)]


def _whole_word(needle: str, text: str) -> bool:
    # Latin letters and digits bound a word; a Chinese character next to it does not.
    return re.search(rf"(?<![a-z0-9]){re.escape(needle)}(?![a-z0-9])", text) is not None


def _without_prior(question: str) -> str:
    return _PRIOR_THERAPY.sub(" ", question)


def _treatment_criteria(question: str, terms: Sequence[Term]) -> Iterable[Criterion]:
    """Treatments the question asks about (not those it names as already failed)."""
    asked = _without_prior(question)
    asked_terms = {id(t) for t in terms if _mentions(asked, t)}
    seen: set[str] = set()
    for label_en, label_zh, cue, classes in _CLASS_GROUPS:
        if label_en in seen or not re.search(cue, asked, re.IGNORECASE):
            continue
        seen.add(label_en)
        yield Criterion("treatment", label_en, label_zh, _has_class(classes))
    for name, chinese in DRUG_CLASSES.items():
        cue = rf"(?<![\w-]){re.escape(name)}s?(?![\w-])|{re.escape(chinese)}"
        if name not in seen and re.search(cue, asked, re.IGNORECASE):
            seen.add(name)
            yield Criterion("treatment", name, chinese, _has_class(frozenset({name})))
    for term in terms:
        if id(term) not in asked_terms or term.type not in {"drug", "regimen", "class"}:
            continue
        english = term.en[0] if term.en else (term.abbr[0] if term.abbr else term.zh[0])
        alias = _GLOSSARY_CLASS_ALIASES.get(english) or next(
            (_GLOSSARY_CLASS_ALIASES[a] for a in term.abbr if a in _GLOSSARY_CLASS_ALIASES), None
        )
        if alias:
            if alias in seen:
                continue
            seen.add(alias)
            group = next((g for g in _CLASS_GROUPS if g[0] == alias), None)
            classes = group[3] if group else frozenset({alias})
            yield Criterion("treatment", alias, group[1] if group else alias, _has_class(classes))
            continue
        record_class = _record_class(term)
        if record_class and record_class in seen:
            continue
        key = record_class or english
        if key in seen:
            continue
        seen.add(key)
        chinese = term.zh[0] if term.zh else english
        test = _has_class(frozenset({record_class})) if record_class else _uses(term)
        yield Criterion("treatment", key, DRUG_CLASSES.get(key, chinese), test)
    if not seen:
        # A target the question names (DLL3, VHL) stands for the treatments aimed at it.
        for term in terms:
            if term.type == "biomarker" and id(term) in asked_terms:
                english = term.en[0] if term.en else term.zh[0]
                yield Criterion(
                    "treatment", english, term.zh[0] if term.zh else english, _uses(term)
                )


def _mentions(text: str, term: Term) -> bool:
    folded = normalize_text(text)
    return any(normalize_text(f) in folded for f in term.forms)


def _record_class(term: Term) -> str | None:
    """The record drug class a glossary class term names, if it names one."""
    if term.type != "class":
        return None
    forms = {normalize_text(f) for f in term.forms}
    for name, chinese in DRUG_CLASSES.items():
        if normalize_text(name) in forms or normalize_text(chinese) in forms:
            return name
    return None


def _has_class(classes: frozenset[str]) -> Callable[[TrialRecord], bool]:
    return lambda record: bool(classes & set(record.drug_classes))


def _uses(term: Term) -> Callable[[TrialRecord], bool]:
    """Whether a record's arms use the drug or regimen (its names, labels or description)."""
    forms = [normalize_text(f) for f in term.forms if len(f) >= 2]

    def test(record: TrialRecord) -> bool:
        texts = [record.design, record.name]
        for arm in record.arms:
            texts += [arm.label, arm.label_en or "", *arm.drugs_zh, *arm.drugs_en]
        folded = [normalize_text(t) for t in texts if t]
        return any(_whole_word(f, t) if f.isascii() else f in t for f in forms for t in folded)

    return test


def _site_criteria(question: str, terms: Sequence[Term]) -> list[Criterion]:
    """Sites the question names, through the glossary and the records' own site names; a
    name inside a longer one ("胰腺" in "非胰腺", "肺" in "肺外") is not a site of its own."""
    spans: list[tuple[int, int, str]] = []
    folded = normalize_text(question)
    for site, chinese in SITE_ZH.items():
        for form in (site, chinese):
            pattern = re.escape(normalize_text(form))
            if form.isascii():
                pattern = rf"(?<![\w-]){pattern}s?(?![\w-])"
            spans += [(m.start(), m.end(), site) for m in re.finditer(pattern, folded)]
    for term in terms:
        if term.type != "site":
            continue
        site = _record_site(term)
        for form in term.forms:
            start = folded.find(normalize_text(form))
            if site and start >= 0:
                spans.append((start, start + len(form), site))
    kept = [
        span
        for span in spans
        if not any(
            o[0] <= span[0] and span[1] <= o[1] and o[1] - o[0] > span[1] - span[0] for o in spans
        )
    ]
    criteria = []
    for site in dict.fromkeys(site for _, _, site in kept):
        parts = frozenset(_SITE_PARTS.get(normalize_text(site), {normalize_text(site)}))
        criteria.append(
            Criterion(
                "site",
                site,
                SITE_ZH[site],
                lambda r, s=parts: bool(s & {normalize_text(x) for x in r.site}),
            )
        )
    return criteria


def _record_site(term: Term) -> str | None:
    """The record site a glossary site term names ("bronchopulmonary" is the lung)."""
    forms = {normalize_text(f) for f in term.forms}
    if "bronchopulmonary" in forms:
        return "lung"
    for site, chinese in SITE_ZH.items():
        if normalize_text(site) in forms or normalize_text(chinese) in forms:
            return site
    return None


def _selects(cue: str, question: str) -> bool:
    """Whether the question asks for what ``cue`` names (not "beyond first-line", "除一线以外")."""
    for match in re.finditer(cue, question, re.IGNORECASE):
        before = question[max(0, match.start() - 24) : match.start()]
        after = question[match.end() : match.end() + 6]
        if not _EXCLUDING.search(before) and not re.match(r"\S{0,4}(?:以外|之外)", after):
            return True
    return False


def _pattern_criteria(question: str) -> list[Criterion]:
    """Grade, phase, line of therapy and setting, read from the question's own words."""
    criteria: list[Criterion] = []
    for label_en, label_zh, cue, test in _GRADES:
        if re.search(cue, question, re.IGNORECASE):
            criteria.append(
                Criterion("grade", label_en, label_zh, lambda r, t=test: t(_grade_set(r)))
            )
    phases = {_ROMAN.get(p.upper(), p.upper()) for p in _PHASE_EN.findall(question)}
    phases |= {_ROMAN.get(p, p) for p in _PHASE_ZH.findall(question)}
    for phase in sorted(phases):
        criteria.append(
            Criterion(
                "phase",
                f"phase {phase}",
                f"{phase}期",
                lambda r, p=phase: p in phase_parts(r.phase),
            )
        )
    for line, cue in _LINE_CUES.items():
        # "after EP fails" asks for what comes after; "EP" and its line are what came before.
        asked = question if line == "after progression" else _without_prior(question)
        if _selects(cue, asked):
            # A second-line trial is one after the first line failed.
            lines = {line, "second-line"} if line == "after progression" else {line}
            criteria.append(
                Criterion(
                    "line",
                    line,
                    LINES_OF_THERAPY[line][0],
                    lambda r, x=frozenset(lines): bool(x & set(r.lines)),
                )
            )
    for tag, cue in _DESIGN_CUES.items():
        if _selects(cue, question):
            criteria.append(
                Criterion("design", tag, DESIGN_TAGS[tag][0], lambda r, x=tag: x in r.design_tags)
            )
    if _MONOTHERAPY.search(question):
        criteria.append(Criterion("arms", "monotherapy", "单药", _is_monotherapy))
    elif _COMBINATION_SETTING.search(question):
        criteria.append(Criterion("arms", "combination", "联合治疗", _is_combination))
    return criteria


def _grade_set(record: TrialRecord) -> set[str]:
    return {*record.grade, *(s for s in record.site if s == "SCLC")}


def _active_drugs(arm_drugs: Sequence[str]) -> list[str]:
    return [d for d in arm_drugs if d != "placebo"]


def _is_monotherapy(record: TrialRecord) -> bool:
    return bool(record.arms) and all(len(_active_drugs(a.drugs_en)) == 1 for a in record.arms)


def _is_combination(record: TrialRecord) -> bool:
    return any(len(_active_drugs(a.drugs_en)) >= 2 for a in record.arms)


def phase_parts(phase: str | None) -> set[str]:
    if not phase:
        return set()
    return {p.rstrip("B") for p in phase.split("/")}
