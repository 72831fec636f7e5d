"""``nenqa eval``: every metric on eval/qa.jsonl, and ``nenqa eval retrieval``.

The entry point opens what the evaluation asks: a deployment by URL, or the API's own ASGI app
in this process (``in_process_chat``), so ``eval`` never imports ``server``.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

import eval as eval_package
from cli.console import console, fail, out
from cli.local_llm import start_local_llm
from nenqa.settings import Settings, get_settings

if TYPE_CHECKING:
    from eval.client import ChatClient

# Shipped inside the eval package, so the defaults hold in a checkout and an installed wheel.
EVAL_DIR = Path(eval_package.__file__).resolve().parent
DEFAULT_QA = EVAL_DIR / "qa.jsonl"
DEFAULT_THRESHOLDS = EVAL_DIR / "thresholds.toml"
DEFAULT_OUT = Path("eval/out")

eval_app = typer.Typer(help="Score retrieval and answers on eval/qa.jsonl.")


def in_process_chat(settings: Settings, mode: str | None) -> ChatClient:
    """A client of the API app in this process, its service (index, model, modes) loaded first.

    The app gets no API keys and no rate limit (the evaluation is its only client). Raises
    ``EvalRunError`` when the requested mode cannot run (e.g. llm without an endpoint) and
    ``IndexUnavailableError`` when there is no index.
    """
    from fastapi.testclient import TestClient

    from answer.base import AnswerError
    from eval.client import ChatClient
    from eval.run import EvalRunError
    from server.app import create_app
    from server.state import load_service

    service = load_service(settings)
    chosen = mode or settings.answer_mode
    try:
        service.answerer(chosen)
    except AnswerError as error:
        raise EvalRunError(f"answer mode {chosen!r} cannot run: {error}") from error
    local = settings.model_copy(update={"api_keys": [], "rate_limit_per_minute": 0})
    client = TestClient(create_app(local, service=service), raise_server_exceptions=False)
    return ChatClient(client, mode=mode, where="in-process", closer=client.close, service=service)


@eval_app.callback(invoke_without_command=True)
def eval_all(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="Evaluate a running deployment (e.g. http://127.0.0.1:8000)."),
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="Answer mode to ask for (extractive, llm).")
    ] = None,
    judge: Annotated[
        str, typer.Option(help="Support judge: deterministic (offline) or llm (both then run).")
    ] = "deterministic",
    judge_url: Annotated[
        str | None,
        typer.Option(
            help="OpenAI-compatible endpoint of the LLM judge (default: NENQA_LLM_BASE_URL, "
            "else the local model, started for the run; see make llm)."
        ),
    ] = None,
    judge_model: Annotated[str | None, typer.Option(help="Model name of the LLM judge.")] = None,
    api_key: Annotated[
        str | None, typer.Option(help="API key for --url (sent as a Bearer token).")
    ] = None,
    qa: Annotated[Path, typer.Option(help="The evaluation set.")] = DEFAULT_QA,
    out_dir: Annotated[Path, typer.Option("--out", help="Where report files go.")] = DEFAULT_OUT,
    ids: Annotated[
        str | None, typer.Option(help="Only these items, comma-separated (q001,q005).")
    ] = None,
    baseline: Annotated[
        bool, typer.Option(help="Also run the tutorial recipe (in-process runs only).")
    ] = True,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when a metric misses eval/thresholds.toml.")
    ] = False,
    thresholds: Annotated[Path, typer.Option(help="Thresholds for --check.")] = DEFAULT_THRESHOLDS,
) -> None:
    """All metrics: citations (ALCE), faithfulness, numbers, key facts, abstention, retrieval."""
    if ctx.invoked_subcommand is not None:
        return
    from eval.check_thresholds import ThresholdsError, check_thresholds, load_thresholds
    from eval.judges import JudgeUnavailableError
    from eval.qa_schema import QASetError
    from eval.run import EvalRunError, run_eval
    from retriever.store import IndexUnavailableError

    settings = get_settings()
    stack = ExitStack()
    # No endpoint given or configured: the llm mode and the LLM judge use the local model.
    if not settings.llm_base_url and (
        (judge == "llm" and not judge_url) or (mode == "llm" and not url)
    ):
        settings = start_local_llm(stack, settings, sigterm_exit_code=128 + 15)
    chat_settings = settings
    try:
        limits = load_thresholds(thresholds) if check else {}
        report = run_eval(
            settings,
            qa,
            out_dir,
            url=url,
            mode=mode,
            judge=judge,
            judge_url=judge_url,
            judge_model=judge_model,
            with_baseline=baseline,
            ids=[i.strip() for i in ids.split(",") if i.strip()] if ids else None,
            api_key=api_key,
            in_process=lambda chosen: in_process_chat(chat_settings, chosen),
            console=console,
        )
    except (
        EvalRunError,
        JudgeUnavailableError,
        QASetError,
        ThresholdsError,
        IndexUnavailableError,
    ) as error:
        fail(str(error))
    finally:
        stack.close()
    _print_eval_summary(report, limits)
    console.print(f"reports in {out_dir}/ (report.json, report.md, comparison.png)")
    if check:
        problems = check_thresholds(report, limits)
        for problem in problems:
            console.print(f"[bold red]below threshold:[/] {problem}", highlight=False)
        if problems:
            raise typer.Exit(1)
        console.print(f"every threshold in {thresholds} is met")


def _print_eval_summary(report: dict, limits: dict[str, dict[str, float]]) -> None:
    table = Table(title=f"nenqa eval ({report['run']['items']} questions)")
    for column in ("metric", "value", "threshold"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, value in report.items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            bound = next(
                (f"{b} {limits[b][key]:g}" for b in ("min", "max") if key in limits.get(b, {})),
                "",
            )
            table.add_row(key, f"{value:.3f}", bound)
    console.print(table)
    failing = len(report["failures"])
    if failing:
        console.print(f"{failing} items miss something; see report.md")


@eval_app.command("retrieval")
def eval_retrieval(
    qa: Annotated[Path, typer.Option(help="The evaluation set.")] = DEFAULT_QA,
    out_dir: Annotated[Path, typer.Option("--out", help="Where report files go.")] = DEFAULT_OUT,
    baseline: Annotated[
        bool, typer.Option(help="Also run the tutorial recipe (1000/200 splitter, dense top 4).")
    ] = True,
) -> None:
    """Recall@1/3/5/10 of gold references and key facts, MRR@10, nDCG@10; writes JSON."""
    from eval.retrieval import run_retrieval_eval

    settings = get_settings()
    report = run_retrieval_eval(settings, qa, out_dir, with_baseline=baseline, console=console)
    out.print_json(json.dumps(report["summary"], ensure_ascii=False))
