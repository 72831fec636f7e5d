"""Rendering at ingest: every quotable unit of a parsed corpus gets a rendering in the other
language, and each parent chunk with any rendering gets its twin (``ingest.twins``).

Where a rendering comes from, in order: (a) the renderings file shipped beside the source
(``<stem>.<lang>.jsonl``, ``ingest.renderings``); (b) the cache, keyed by unit ID and target
language; (c) the translator, an OpenAI-compatible chat model with ``prompts/translate.md``,
asked once per unit with the unit's citation markers taken out (a small model drops or
renumbers them) and put back by code at the end of its rendering. A rendering from (b) or (c)
that fails ``nenqa.text.rendering_problems`` is discarded and counted; the unit keeps its
original alone. An unreachable translator ends the asking for the run: ingest completes, the
report says how many units lack a rendering, and a later run fills them in (new twins replace
old ones through the normal pipeline).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import openai

from ingest.pipeline import ParsedCorpus, ProgressCallback
from ingest.renderings import Language, Rendering, other_language, shipped_renderings
from ingest.twins import build_twin, quotable_units
from nenqa.glossary import Glossary, load_glossary_table
from nenqa.prompt_files import PromptFile, load_prompt
from nenqa.settings import Settings
from nenqa.text import (
    REVIEW_MARKER,
    detect_language,
    rendering_problems,
    strip_citation_markers,
    unit_id,
)
from nenqa.types import Chunk, TrialRecord

LANGUAGE_NAMES = {"en": "English", "zh": "Simplified Chinese"}


class TranslatorUnavailableError(Exception):
    """The translation endpoint cannot be reached or refuses to answer."""


class Translator(Protocol):
    def translate(self, text: str, target: Language, terms: str) -> str: ...


class ChatTranslator:
    """Asks an OpenAI-compatible chat endpoint for one rendering at a time."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "not-needed",
        timeout_s: float = 60.0,
        max_tokens: int = 1024,
        prompt: PromptFile | None = None,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.prompt = prompt or load_prompt("translate.md")
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0
        )

    @classmethod
    def from_settings(cls, settings: Settings, base_url: str | None = None) -> ChatTranslator:
        url = base_url or settings.llm_base_url
        if not url:
            raise TranslatorUnavailableError("no LLM endpoint configured (NENQA_LLM_BASE_URL)")
        return cls(
            url,
            settings.llm_model,
            api_key=settings.llm_api_key.get_secret_value(),
            timeout_s=settings.llm_timeout_s,
        )

    def translate(self, text: str, target: Language, terms: str) -> str:
        """The model's rendering of ``text`` into ``target``; raises
        ``TranslatorUnavailableError`` when the endpoint fails."""
        message = self.prompt.template.format(
            target_language=LANGUAGE_NAMES[target], terms=terms or "(none)", text=text
        )
        try:
            reply = self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": message}],
                temperature=0,
                max_tokens=self.max_tokens,
            )
        except openai.APIError as error:
            raise TranslatorUnavailableError(f"the translation endpoint failed: {error}") from error
        return (reply.choices[0].message.content or "").strip()


class RenderingCache:
    """Renderings by (unit ID, language), one JSON line each, appended as they are made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._texts: dict[tuple[str, str], str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self._texts[(entry["id"], entry["language"])] = entry["text"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line of an interrupted run: that unit is asked again

    def get(self, unit: str, language: Language) -> str | None:
        return self._texts.get((unit, language))

    def put(self, unit: str, language: Language, text: str) -> None:
        self._texts[(unit, language)] = text
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"id": unit, "language": language, "text": text}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")


@dataclass
class TranslationReport:
    """Where the renderings of one ingest came from, per unit that needed one."""

    units: int = 0
    shipped: int = 0
    cached: int = 0
    translated: int = 0
    failed_checks: int = 0
    missing: int = 0
    twins: int = 0
    translator_error: str | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int | str | None]:
        return {k: v for k, v in self.__dict__.items() if k != "problems"}


class Renderer:
    """Gives every parent chunk of a corpus its twin, from data, cache or model.

    ``translator`` is a factory called only when some unit needs the model (the CLI starts the
    local model there), and at most once; ``None`` turns translation off (``--no-translate``).
    """

    def __init__(
        self,
        glossary: Glossary,
        *,
        cache: RenderingCache | None = None,
        translator: Callable[[], Translator] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.glossary = glossary
        self.cache = cache
        self._make_translator = translator
        self._translator: Translator | None = None
        self.on_progress = on_progress
        self.report = TranslationReport()  # of the last ``render``

    def render(self, corpus: ParsedCorpus) -> TranslationReport:
        """Add the twins to ``corpus`` (its chunks and each source's) and report the counts."""
        report = self.report = TranslationReport()
        shipped: dict[tuple[str, Language], Rendering] = {}
        for source in corpus.sources:
            for path in _renderings_sources(source.path, source.cites):
                for language in ("zh", "en"):
                    for rendering in shipped_renderings(path, language).values():
                        shipped[(rendering.unit_id, language)] = rendering
        wanted: dict[tuple[str, Language], str] = {}
        for chunk in filter(_rendered, corpus.chunks):
            target = other_language(chunk.language)
            for unit in quotable_units(chunk):
                if detect_language(unit) != target:
                    wanted.setdefault((unit_id(unit), target), unit)
        report.units = len(wanted)
        found = self._resolve(wanted, shipped, report)
        trials = {t.id: t for t in corpus.trials}
        for source in corpus.sources:
            twins = [
                twin
                for chunk in filter(_rendered, source.chunks)
                if (twin := self._twin(chunk, found, trials)) is not None
            ]
            source.chunks.extend(twins)
            corpus.chunks.extend(twins)
            report.twins += len(twins)
        return report

    def _resolve(
        self,
        wanted: dict[tuple[str, Language], str],
        shipped: dict[tuple[str, Language], Rendering],
        report: TranslationReport,
    ) -> dict[tuple[str, Language], str]:
        found: dict[tuple[str, Language], str] = {}
        asked: list[tuple[tuple[str, Language], str]] = []
        for key, unit in wanted.items():
            if key in shipped:
                found[key] = shipped[key].text
                report.shipped += 1
            else:
                asked.append((key, unit))
        for done, (key, unit) in enumerate(asked, start=1):
            text, origin = self._rendering(unit, key, report)
            if text is not None:
                found[key] = text
                setattr(report, origin, getattr(report, origin) + 1)
            if self.on_progress:
                self.on_progress(done, len(asked))
        report.missing = len(wanted) - len(found) - report.failed_checks
        return found

    def _rendering(
        self, unit: str, key: tuple[str, Language], report: TranslationReport
    ) -> tuple[str | None, str]:
        target = key[1]
        cached = self.cache.get(*key) if self.cache is not None else None
        if cached is not None and not self._problems(unit, cached, target):
            return cached, "cached"
        translator = self._translator_or_none(report)
        if translator is None:
            return None, ""
        try:
            text, problems = self.translate(translator, unit, target)
        except TranslatorUnavailableError as error:
            report.translator_error = str(error)
            self._make_translator, self._translator = None, None  # ask no more this run
            return None, ""
        if problems:
            report.failed_checks += 1
            report.problems.append(f"{unit[:40]}: {'; '.join(problems)}")
            return None, ""
        if self.cache is not None:
            self.cache.put(*key, text)
        return text, "translated"

    def translate(
        self, translator: Translator, unit: str, target: Language
    ) -> tuple[str, list[str]]:
        """The model's rendering of one unit and what the translation check finds wrong with
        it (nothing: a faithful rendering); the glossary forms of its terms go in the prompt."""
        terms = "; ".join(
            f"{term.forms[0]} = {' / '.join(term.en or term.abbr or term.forms)}"
            if target == "en"
            else f"{(term.en or term.forms)[0]} = {' / '.join(term.zh or term.forms)}"
            for term in self.glossary.matches(unit)
        )
        markers = [m.group() for m in REVIEW_MARKER.finditer(unit)]
        text = translator.translate(strip_citation_markers(unit), target, terms)
        text = with_markers(strip_citation_markers(text), markers) if text else text
        return text, self._problems(unit, text, target)

    def _problems(self, unit: str, text: str, target: Language) -> list[str]:
        if not text:
            return ["the rendering is empty"]
        return rendering_problems(unit, text, self.glossary, target)

    def _translator_or_none(self, report: TranslationReport) -> Translator | None:
        if self._translator is None and self._make_translator is not None:
            try:
                self._translator = self._make_translator()
            except TranslatorUnavailableError as error:
                report.translator_error = str(error)
                self._make_translator = None
        return self._translator

    def _twin(
        self,
        chunk: Chunk,
        found: dict[tuple[str, Language], str],
        trials: dict[str, TrialRecord],
    ) -> Chunk | None:
        target = other_language(chunk.language)
        units = quotable_units(chunk)
        rendered = [found.get((unit_id(unit), target)) for unit in units]
        if not any(rendered):
            return None  # units already in the target language alone make no twin
        renderings = [
            unit if detect_language(unit) == target else text
            for unit, text in zip(units, rendered, strict=True)
        ]
        trial = trials.get(str(chunk.metadata.get("trial_id", "")))
        return build_twin(chunk, renderings, target, trial)


# Closing punctuation a sentence's markers go before: "...rise^[1]." like the review's "升高^[1]。".
_SENTENCE_END = re.compile(r"[.。!！?？;；]*[\s\"'”’)）]*$")


def with_markers(rendering: str, markers: Iterable[str]) -> str:
    """``rendering`` with the original's citation markers (each once, in order) before its
    closing punctuation: a unit's markers all cite the one statement it makes."""
    joined = "".join(dict.fromkeys(markers))
    if not joined:
        return rendering
    text = rendering.rstrip()
    end = _SENTENCE_END.search(text)
    cut = end.start() if end else len(text)
    return text[:cut].rstrip() + joined + text[cut:]


def renderer_for(
    settings: Settings,
    *,
    translator: Callable[[], Translator] | None,
    on_progress: ProgressCallback | None = None,
) -> Renderer:
    """A renderer with the corpus glossary (``data_dir/glossary.tsv``) and the settings' cache."""
    table = settings.data_dir / "glossary.tsv"
    cache_path = settings.translation_cache_path
    return Renderer(
        Glossary(load_glossary_table(table) if table.is_file() else []),
        cache=RenderingCache(cache_path) if cache_path else None,
        translator=translator,
        on_progress=on_progress,
    )


def _rendered(chunk: Chunk) -> bool:
    """Whether a chunk gets a twin: a parent, and not an English reference entry (cited by its
    number, never quoted, and already in the language of the printed lists)."""
    return chunk.rendering_of is None and not (chunk.kind == "reference" and chunk.language == "en")


def _renderings_sources(path: Path, cites: str) -> Iterable[Path]:
    """The sources whose shipped renderings a source may use: itself and, for trial records,
    the document whose sentences their summaries quote (beside it, ``<doc_id>.md``)."""
    yield path
    if cites and cites != path.stem:
        yield path.with_name(f"{cites}.md")
