"""Benchmark: translation at ingest on the local model: sentences per second and check pass rate.

Takes the first N Chinese sentences of the review (from its shipped renderings file, whose
English is ignored: every sentence goes to the model, the cache is not used), renders each into
English the way ``nenqa ingest`` does for a new document (``ingest.translation.Renderer``:
``prompts/translate.md`` with the glossary forms of the sentence's terms, then
``nenqa.text.rendering_problems``), one request at a time. Starts the prepared local model
(``make llm-prepare``; llama-cpp-python on loopback) unless ``--base-url`` names a running
OpenAI-compatible server. Prints a table and writes JSON (default
``benchmarks/out/bench_translate.json``) with every rendering and its problems.

    .venv/bin/python benchmarks/bench_translate.py [--n 40] [--base-url URL]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.renderings import load_renderings, renderings_path  # noqa: E402
from ingest.sources import DEFAULT_REVIEW  # noqa: E402
from ingest.translation import ChatTranslator, Renderer  # noqa: E402
from nenqa.glossary import Glossary, load_glossary_table  # noqa: E402
from nenqa.settings import Settings, get_settings  # noqa: E402
from nenqa.text import detect_language  # noqa: E402


@contextmanager
def endpoint(settings: Settings, base_url: str | None, log: Path) -> Iterator[Settings]:
    """Settings pointing at ``base_url``, or at the local model started for the run."""
    from nenqa.models.llm_server import local_llm, local_llm_settings

    if base_url:
        yield local_llm_settings(settings, base_url)
        return
    with local_llm(settings, log_path=log) as (_, local):
        yield local


def review_sentences(settings: Settings, count: int) -> list[str]:
    """The first ``count`` Chinese quotable sentences of the review, in order."""
    path = renderings_path(settings.data_dir / DEFAULT_REVIEW, "en")
    units = [r.original for r in load_renderings(path, "en").values()]
    return [u for u in units if detect_language(u) == "zh"][:count]


def percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40, help="how many review sentences")
    parser.add_argument("--base-url", help="a running OpenAI-compatible server (/v1)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "out" / "bench_translate.json"
    )
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = get_settings()
    sentences = review_sentences(settings, args.n)
    glossary = Glossary(load_glossary_table(settings.data_dir / "glossary.tsv"))
    renderer = Renderer(glossary)  # no cache: every sentence is asked
    rows = []
    with endpoint(settings, args.base_url, args.out.with_suffix(".server.log")) as local:
        translator = ChatTranslator.from_settings(local)
        started = time.perf_counter()
        for sentence in sentences:
            asked = time.perf_counter()
            text, problems = renderer.translate(translator, sentence, "en")
            rows.append(
                {
                    "zh": sentence,
                    "en": text,
                    "problems": problems,
                    "ms": round((time.perf_counter() - asked) * 1000, 1),
                }
            )
        seconds = time.perf_counter() - started
    latencies = [row["ms"] for row in rows]
    passed = sum(1 for row in rows if not row["problems"])
    summary = {
        "sentences": len(rows),
        "characters": sum(len(s) for s in sentences),
        "seconds": round(seconds, 1),
        "sentences_per_s": round(len(rows) / seconds, 3) if seconds else None,
        "check_pass_rate": round(passed / len(rows), 3) if rows else None,
        "ms_p50": percentile(latencies, 50),
        "ms_p95": percentile(latencies, 95),
        "ms_mean": round(statistics.fmean(latencies), 1) if latencies else None,
        "model": local.llm_model if args.base_url else "local (prepared GGUF, 2 threads)",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(f"{'sentences':>10} {'seconds':>8} {'sent/s':>8} {'pass rate':>10} {'p50 ms':>8}")
    print(
        f"{summary['sentences']:>10} {summary['seconds']:>8} {summary['sentences_per_s']!s:>8} "
        f"{summary['check_pass_rate']!s:>10} {summary['ms_p50']!s:>8}"
    )
    failures = [row for row in rows if row["problems"]]
    for row in failures[:10]:
        print(f"  failed: {row['zh'][:30]}... {'; '.join(row['problems'])}")
    report = {"summary": summary, "renderings": rows}
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
