"""Support judges: does this evidence support this claim? One offline and strict, one an LLM.

``DeterministicJudge`` always runs offline. A claim is supported only when every number in it
occurs in the evidence, each number in a clause sharing at least half of the words around it in
the claim (so ``lanreotide 9.8 months`` is refused when 9.8 is the placebo arm's), and at least
``min_coverage`` of its Chinese character bigrams and English content words occur in the
evidence. An English claim about Chinese evidence can only be checked on its anchors (numbers,
trial and drug names, glossary terms): each must occur, through the bilingual glossary; and a
claim that states a direction (``worse``, ``improved``, ``not``) is refused, since only an LLM
judge can check it across languages.

``LLMJudge`` asks any OpenAI-compatible endpoint (through langchain-openai) with the prompts in
``prompts/judge_claims.md`` and ``prompts/judge_verdict.md``. Its output is parsed strictly:
anything but the JSON object the prompt asks for is an invalid output, counted in
``invalid_outputs`` and returned as ``Verdict(None)`` / ``None``, never guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eval.metrics import Verdict, clauses, format_number, normalise, text_units
from nenqa.resources import bundled_dir
from nenqa.text import detect_language, numbers_in, rendering_problems, singular, unit_id

PROMPTS_DIR = bundled_dir("prompts")
_CLAUSE = re.compile(r"[，；;。！？!?\n]|,(?!\d{3}\b)")
# Words that say which way a result went; across languages only an LLM judge can check them.
_DIRECTION = re.compile(
    r"\b(?:worse|better|superior|inferior|doubl\w*|tripl\w*|halv\w*|cur(?:e|es|ed|ing)|"
    r"fail\w*|improv\w*|prolong\w*|shorten\w*|extend\w*|longer|shorter|higher|lower|"
    r"increas\w*|decreas\w*|reduc\w*|more|less|significant\w*|not|no|never|without|"
    r"ineffective|effective|benefit\w*|harm\w*)\b",
    re.IGNORECASE,
)
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*")


class JudgeUnavailableError(RuntimeError):
    """The LLM judge's endpoint is not configured or did not answer."""


# --- deterministic -----------------------------------------------------------------------------


class DeterministicJudge:
    """Normalised number match plus character-bigram and word overlap; see the module docstring."""

    name = "deterministic"

    def __init__(
        self,
        glossary: object | None = None,
        *,
        min_coverage: float = 0.85,
        min_number_context: float = 0.5,
        waivers: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        self.glossary = glossary
        self.waivers = dict(waivers or {})
        self.min_coverage = min_coverage
        self.min_number_context = min_number_context
        self._cache: dict[tuple[str, tuple[str, ...]], Verdict] = {}
        self._glossary_words: frozenset[str] = frozenset()
        if glossary is not None:
            forms = [f for term in glossary.terms for f in (*term.en, *term.abbr)]  # type: ignore[attr-defined]
            self._glossary_words = frozenset(u for f in forms for u in text_units(f))

    def claims(self, sentence: str) -> list[str]:
        """Clauses of the sentence (commas and semicolons), short ones joined to the next."""
        return clauses(sentence)

    def check_rendering(self, original: str, rendering: str) -> Verdict:
        """Whether ``rendering`` translates ``original`` faithfully: ``nenqa.text.
        rendering_problems`` (numbers, citation markers, comparison signs, glossary terms, no
        Chinese left in English), honouring the reviewed waivers of the original's unit."""
        if self.glossary is None:
            raise ValueError("checking a translation needs the glossary")
        waive = self.waivers.get(unit_id(original), ())
        problems = rendering_problems(original, rendering, self.glossary, waive=waive)  # type: ignore[arg-type]
        if problems:
            return Verdict(False, "; ".join(problems))
        return Verdict(True, "numbers, markers, signs and glossary terms match the original")

    def judge(self, claim: str, evidence: Sequence[str]) -> Verdict:
        key = (claim, tuple(evidence))
        if key not in self._cache:
            self._cache[key] = self._judge(claim, evidence)
        return self._cache[key]

    def _judge(self, claim: str, evidence: Sequence[str]) -> Verdict:
        text = "\n".join(evidence)
        if not text.strip():
            return Verdict(False, "no evidence")
        missing = numbers_in(claim) - numbers_in(text)
        if missing:
            shown = ", ".join(sorted(format_number(n) for n in missing))
            return Verdict(False, f"numbers not in the evidence: {shown}")
        if detect_language(claim) == "en" and detect_language(text) == "zh":
            return self._judge_across_languages(claim, text)
        units = text_units(claim)
        if units:
            found = units & text_units(text)
            coverage = len(found) / len(units)
            if coverage < self.min_coverage:
                return Verdict(
                    False, f"only {coverage:.0%} of the claim's words are in the evidence"
                )
        for number, share in self._number_contexts(claim, evidence):
            if share < self.min_number_context:
                return Verdict(
                    False, f"{format_number(number)} occurs in the evidence about something else"
                )
        return Verdict(True, "numbers and words found in the evidence")

    def _number_contexts(self, claim: str, evidence: Sequence[str]):
        """(number, best share of the claim's words around it found around it in evidence)."""
        claim_clauses = _clauses_with_previous(claim)
        evidence_clauses = [c for text in evidence for c in _clauses_with_previous(text)]
        for clause in claim_clauses:
            context = text_units(clause)
            for number in numbers_in(clause):
                if not context:
                    continue
                shares = [
                    len(context & text_units(other)) / len(context)
                    for other in evidence_clauses
                    if number in numbers_in(other)
                ]
                yield number, max(shares, default=0.0)

    def _judge_across_languages(self, claim: str, text: str) -> Verdict:
        direction = _DIRECTION.search(claim)
        if direction:
            return Verdict(
                False,
                f"{direction.group().lower()!r} states a direction that cannot be checked "
                "against Chinese evidence word by word",
            )
        anchors = self._anchors(claim)
        if not anchors and not numbers_in(claim):
            return Verdict(False, "nothing checkable across languages (no number, no name)")
        known = text_units(text)
        if self.glossary is not None:
            known |= {u for form in self.glossary.expand(text) for u in text_units(form)}  # type: ignore[attr-defined]
        # Chinese has no plural: "NETs" is named where the evidence says NET, and "drugs" where
        # the glossary renders 药物 as "drug".
        known = {singular(u) for u in known}
        missing = sorted(a for a in anchors if singular(a) not in known)
        if missing:
            return Verdict(False, f"names not in the evidence: {', '.join(missing)}")
        return Verdict(True, "numbers and names found in the evidence (cross-language check)")

    def _anchors(self, claim: str) -> set[str]:
        """English words that name something: with digits, in capitals, or glossary terms."""
        anchors: set[str] = set()
        for word in _LATIN_WORD.findall(claim):
            units = text_units(word)
            capitals = sum(c.isupper() for c in word)
            if any(c.isdigit() for c in word) or capitals >= 2 or units & self._glossary_words:
                anchors |= units
        return anchors


def _clauses_with_previous(text: str) -> list[str]:
    pieces = [p for p in _CLAUSE.split(normalise(text)) if p.strip()]
    return [f"{pieces[i - 1]} {p}" if i else p for i, p in enumerate(pieces)]


# --- agreement ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """How often two judges agree on the same support questions, raw and chance-corrected."""

    pairs: int
    raw: float
    kappa: float


def cohen_kappa(first: Sequence[bool], second: Sequence[bool]) -> Agreement:
    """Cohen's kappa of two binary raters over the same items (1.0 when they never differ)."""
    if len(first) != len(second):
        raise ValueError("both judges must rate the same items")
    n = len(first)
    if n == 0:
        return Agreement(0, 0.0, 0.0)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    p_first, p_second = sum(first) / n, sum(second) / n
    expected = p_first * p_second + (1 - p_first) * (1 - p_second)
    kappa = 1.0 if expected == 1 else (observed - expected) / (1 - expected)
    return Agreement(n, observed, kappa)


# --- LLM ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgePrompt:
    """A prompt file: its system and user templates (LangChain f-string syntax)."""

    path: Path
    system: str
    user: str

    def messages(self, **variables: str) -> list[tuple[str, str]]:
        return [
            ("system", self.system.format(**variables)),
            ("user", self.user.format(**variables)),
        ]


_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_PART = re.compile(r"^## (system|user)\s*$", re.MULTILINE)


def load_prompt(path: Path) -> JudgePrompt:
    """Read a prompt file: an HTML comment saying what it is for, then ``## system`` and
    ``## user`` parts. Raises ``ValueError`` naming the file when a part is missing."""
    text = _COMMENT.sub("", path.read_text(encoding="utf-8"))
    parts: dict[str, str] = {}
    matches = list(_PART.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        parts[match.group(1)] = text[match.end() : end].strip()
    missing = [p for p in ("system", "user") if not parts.get(p)]
    if missing:
        raise ValueError(f"{path}: missing the '## {missing[0]}' part of the prompt")
    return JudgePrompt(path, parts["system"], parts["user"])


_FENCE = re.compile(r"^```(?:json)?\s*\n(?P<body>.*)\n```$", re.DOTALL)
VERDICTS = {"supported": True, "not_supported": False}


def _json_object(output: str) -> dict | None:
    text = output.strip()
    if fence := _FENCE.match(text):
        text = fence.group("body").strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def parse_verdict(output: str) -> Verdict:
    """``{"verdict": "supported" | "not_supported", "reason": "..."}`` or ``Verdict(None)``.

    Only that object is accepted (optionally inside one json code fence): no prose around it,
    no other keys, no other verdict words.
    """
    value = _json_object(output)
    if value is None or not set(value) <= {"verdict", "reason"}:
        return Verdict(None, f"invalid judge output: {output[:200]!r}")
    verdict, reason = value.get("verdict"), value.get("reason", "")
    if verdict not in VERDICTS or not isinstance(reason, str):
        return Verdict(None, f"invalid judge output: {output[:200]!r}")
    return Verdict(VERDICTS[verdict], reason)


def parse_claims(output: str) -> list[str] | None:
    """``{"claims": ["...", ...]}`` (non-empty strings; an empty list is a sentence without a
    factual claim) or ``None`` for anything else."""
    value = _json_object(output)
    if value is None or set(value) != {"claims"} or not isinstance(value["claims"], list):
        return None
    claims = value["claims"]
    if not all(isinstance(c, str) and c.strip() for c in claims):
        return None
    return [c.strip() for c in claims]


@dataclass
class InvalidOutput:
    """One judge output that did not parse: which prompt, and the start of what came back."""

    prompt: str
    output: str


@dataclass
class LLMJudge:
    """The support judge behind an OpenAI-compatible chat endpoint (temperature 0)."""

    base_url: str
    model: str
    api_key: str = "not-needed"
    timeout_s: float = 60.0
    max_tokens: int = 512
    prompts_dir: Path = PROMPTS_DIR
    name: str = "llm"
    invalid_outputs: list[InvalidOutput] = field(default_factory=list)

    def __post_init__(self) -> None:
        from langchain_openai import ChatOpenAI

        if not self.base_url:
            raise JudgeUnavailableError(
                "the LLM judge needs an endpoint: pass --judge-url or set NENQA_LLM_BASE_URL"
            )
        self.claims_prompt = load_prompt(self.prompts_dir / "judge_claims.md")
        self.verdict_prompt = load_prompt(self.prompts_dir / "judge_verdict.md")
        self.chat = ChatOpenAI(
            base_url=self.base_url,
            model=self.model,
            api_key=self.api_key,
            temperature=0,
            timeout=self.timeout_s,
            max_retries=1,
            max_tokens=self.max_tokens,
        )
        self._verdicts: dict[tuple[str, tuple[str, ...]], Verdict] = {}
        self._claims: dict[str, list[str] | None] = {}

    def judge(self, claim: str, evidence: Sequence[str]) -> Verdict:
        key = (claim, tuple(evidence))
        if key not in self._verdicts:
            listed = "\n".join(f"E{i}: {text}" for i, text in enumerate(evidence, start=1))
            output = self._ask(self.verdict_prompt, claim=claim, evidence=listed)
            verdict = parse_verdict(output)
            if verdict.supported is None:
                self.invalid_outputs.append(InvalidOutput("judge_verdict", output[:500]))
            self._verdicts[key] = verdict
        return self._verdicts[key]

    def claims(self, sentence: str) -> list[str] | None:
        if sentence not in self._claims:
            output = self._ask(self.claims_prompt, sentence=sentence)
            claims = parse_claims(output)
            if claims is None:
                self.invalid_outputs.append(InvalidOutput("judge_claims", output[:500]))
            self._claims[sentence] = claims
        return self._claims[sentence]

    def _ask(self, prompt: JudgePrompt, **variables: str) -> str:
        import openai

        try:
            message = self.chat.invoke(prompt.messages(**variables))
        except (openai.APIConnectionError, openai.APITimeoutError, openai.APIStatusError) as error:
            raise JudgeUnavailableError(
                f"the judge endpoint {self.base_url} (model {self.model!r}) failed: {error}; "
                "start it or pass another --judge-url/--judge-model"
            ) from error
        content = message.content
        return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
