"""``nenqa eval``: ask every question of the set, score the answers, write the reports.

The questions go to ``POST /v1/chat``: of a deployment with ``url``, or through the ``chat``
client the entry point hands in (``nenqa eval`` wraps the API's own ASGI app in this process: no
network, same endpoint).
Every answer is scored by ``eval.metrics`` with the offline ``DeterministicJudge``, and with the
``LLMJudge`` too when asked (then their agreement is reported). In-process, the retrieval
metrics (``eval.retrieval``) and the tutorial recipe run as well.

The tutorial recipe (``eval.recipe``) answers the same questions as the baseline.

Output in ``out_dir``: ``report.json`` (top-level keys named after the metrics, values in 0-1,
plus ``run``, ``by_category``, ``by_language``, ``judges``, ``tutorial_recipe``, ``failures``
and ``items``), ``report.md``, ``comparison.png`` and ``retrieval.json``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from eval.client import AskFunction, ChatClient
from eval.judges import DeterministicJudge, LLMJudge
from eval.metrics import RenderingCheck, SupportJudge
from eval.qa_schema import QAItem, load_qa
from eval.recipe import RECIPE_RETRIEVAL_METRICS, tutorial_recipe_answerer
from eval.report import assemble_report, score_item, summarize, write_reports
from nenqa.settings import Settings

JudgeChoice = Literal["deterministic", "llm"]
JUDGE_CHOICES: tuple[JudgeChoice, ...] = ("deterministic", "llm")


class EvalRunError(RuntimeError):
    """The evaluation cannot run (no chat API, bad option); the message says what to do."""


def run_eval(
    settings: Settings,
    qa_path: Path,
    out_dir: Path,
    *,
    url: str | None = None,
    mode: str | None = None,
    judge: JudgeChoice = "deterministic",
    judge_url: str | None = None,
    judge_model: str | None = None,
    with_retrieval: bool = True,
    with_baseline: bool = True,
    ids: Sequence[str] | None = None,
    api_key: str | None = None,
    ask: AskFunction | None = None,
    in_process: Callable[[str | None], ChatClient] | None = None,
    console=None,
) -> dict:
    """Run the whole evaluation and write ``report.json``, ``report.md`` and ``comparison.png``.

    ``judge="llm"`` scores with the LLM judge (``judge_url``/``judge_model``, default the
    settings' LLM endpoint) and also with the deterministic judge, and reports their agreement.
    Without ``url`` the questions go to ``in_process(mode)``, a client of the API in this
    process that the entry point opens (its load time counts as the ``answers`` phase; its
    ``service`` serves the tutorial recipe); ``ask`` replaces the chat API with any function
    from a question to a ``ChatReply`` (the recipe needs the service, so ``with_baseline=False``).
    Raises ``EvalRunError`` for an unknown judge, an unknown item id or an unavailable chat API;
    failed requests do not stop the run, they are reported in ``run.errors`` and ``failures``.
    """
    if judge not in JUDGE_CHOICES:
        raise EvalRunError(f"unknown judge {judge!r}; choose one of {', '.join(JUDGE_CHOICES)}")
    if ask is None and url is None and in_process is None:
        raise EvalRunError("no chat API to ask: give a deployment's url or an in-process client")
    if ask is not None and url is None and with_baseline:
        raise EvalRunError(
            "the tutorial recipe needs the in-process chat service; with a custom "
            "ask, run with with_baseline=False"
        )
    started = time.perf_counter()
    phases: dict[str, float] = {}
    items = _select(load_qa(qa_path), ids)
    by_id = {item.id: item for item in items}
    # Translations are checked by the deterministic judge whichever judge scores support.
    translation = deterministic_judge(settings)
    judges = _judges(settings, translation, judge, judge_url, judge_model)

    service = None
    with _timed(phases, "answers"):
        if ask is not None:
            rows = _ask_all(items, ask, judges, translation, console, "asking")
        else:
            if url:
                chat = ChatClient.over_http(url, mode=mode, api_key=api_key)
            else:
                _say(console, "loading the index, the model and the answer modes")
                assert in_process is not None  # checked above
                chat = in_process(mode)
                service = chat.service
            try:
                rows = _ask_all(
                    items, chat.ask, judges, translation, console, f"asking {chat.where}"
                )
            finally:
                chat.close()

    retrieval: dict | None = None
    if with_retrieval and url is None:
        from eval.retrieval import run_retrieval_eval

        _say(console, "retrieval metrics (and the tutorial recipe's)")
        with _timed(phases, "retrieval"), _selected_items_file(qa_path, ids) as selected:
            retrieval = run_retrieval_eval(settings, selected, out_dir, with_baseline=with_baseline)

    recipe: dict | None = None
    if with_baseline and url is None:
        with _timed(phases, "tutorial_recipe"):
            recipe = _recipe_scores(
                settings, service, items, judges, translation, retrieval, console
            )

    report = assemble_report(rows, by_id, judge, judges, retrieval, recipe)
    answered_modes = ", ".join(report["run"]["modes_answered"])
    report["run"].update(
        qa=str(qa_path),
        target=url or ("custom" if ask else "in-process"),
        mode=mode or answered_modes or "default",
    )
    phases["total"] = round(time.perf_counter() - started, 1)
    report["run"]["seconds"] = phases
    write_reports(report, out_dir)
    return report


@contextmanager
def _selected_items_file(qa_path: Path, ids: Sequence[str] | None) -> Iterator[Path]:
    """``qa_path`` itself, or a temporary copy holding only the ``ids`` lines."""
    if not ids:
        yield qa_path
        return
    wanted = set(ids)
    lines = [
        line
        for line in qa_path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line)["id"] in wanted
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / qa_path.name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        yield path


@contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = round(time.perf_counter() - started, 1)


def _recipe_scores(
    settings: Settings,
    service: Any,  # the loaded chat service behind the in-process client
    items: Sequence[QAItem],
    judges: Mapping[str, SupportJudge],
    translation: RenderingCheck,
    retrieval: dict | None,
    console,
) -> dict:
    ask = tutorial_recipe_answerer(settings, service)
    deterministic = {"deterministic": judges["deterministic"]}
    rows = _ask_all(items, ask, deterministic, translation, console, "tutorial recipe")
    recipe: dict[str, Any] = summarize(rows, {i.id: i for i in items}, "deterministic")
    if retrieval and "tutorial_recipe" in retrieval["summary"]:
        theirs, ours = retrieval["summary"]["tutorial_recipe"], retrieval["summary"]["nenqa"]
        recipe["retrieval"] = {k: theirs.get(k) for k in RECIPE_RETRIEVAL_METRICS}
        recipe["retrieval_nenqa"] = {k: ours.get(k) for k in RECIPE_RETRIEVAL_METRICS}
    return recipe


def _select(items: list[QAItem], ids: Sequence[str] | None) -> list[QAItem]:
    if not ids:
        return items
    known = {item.id for item in items}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise EvalRunError(f"no item with id {', '.join(unknown)} in the evaluation set")
    wanted = set(ids)
    return [item for item in items if item.id in wanted]


def deterministic_judge(settings: Settings) -> DeterministicJudge:
    """The offline judge with the curated glossary and the reviewed waivers of the renderings
    shipped in the data folder (``<stem>.<lang>.jsonl``), so it checks translations as the
    renderings' own test does."""
    from ingest.renderings import load_renderings
    from retriever.search import build_glossary

    waivers: dict[str, tuple[str, ...]] = {}
    for language in ("en", "zh"):
        for path in sorted(settings.data_dir.glob(f"*.{language}.jsonl")):
            for unit, rendering in load_renderings(path, language).items():
                if rendering.waive:
                    waivers[unit] = rendering.waive
    return DeterministicJudge(build_glossary(settings), waivers=waivers)


def _judges(
    settings: Settings,
    deterministic: DeterministicJudge,
    judge: str,
    judge_url: str | None,
    judge_model: str | None,
) -> dict[str, SupportJudge]:
    judges: dict[str, SupportJudge] = {"deterministic": deterministic}
    if judge == "llm":
        judges["llm"] = LLMJudge(
            base_url=judge_url or settings.llm_base_url or "",
            model=judge_model or settings.llm_model,
            api_key=settings.llm_api_key.get_secret_value(),
            timeout_s=settings.llm_timeout_s,
        )
    return judges


def _ask_all(
    items: Sequence[QAItem],
    ask: AskFunction,
    judges: Mapping[str, SupportJudge],
    translation: RenderingCheck,
    console,
    label: str,
) -> list[dict]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    rows = []
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    ) as progress:
        task = progress.add_task(label, total=len(items))
        for item in items:
            rows.append(score_item(item, ask(item), judges, translation))
            progress.advance(task)
    return rows


def _say(console, message: str) -> None:
    if console is not None:
        console.print(message)
