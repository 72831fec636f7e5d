"""Judge recorded llm-mode answers again with the LLM judge beside the deterministic one.

``benchmarks/bench_llm.py`` records each question's answer and the model's raw draft, scored by
the deterministic judge only. Asking the local model to answer *and* judge (``nenqa eval --mode
llm --judge llm``) takes hours on 2 cores; this script spends the model's time on judging alone.
Each recorded answer is paired with the evidence and translated quotes of its response again by
replaying the recorded draft through the llm mode (as ``benchmarks/tune_claims.py`` does: the
chat model returns the draft, the retrieval is the index's); a replay whose answer differs from
the recorded one is reported and left out (a recorded abstention needs no replay: nothing in it
is judged). The recorded answer is then scored by the code of ``nenqa eval --judge llm``
(``eval.report.score_item`` with both judges, translated quotes checked by the deterministic
judge built as ``bench_llm`` builds it, so its rows reproduce the recorded ones), and the LLM
judge's prompts and strict parsing are its own (``eval.judges.LLMJudge``).

Every output of the judge model is appended to a JSONL cache (``--cache``) as it comes, keyed by
prompt and variables, so a stopped run continues where it stopped and a finished one is replayed
without the model. ``--claims deterministic`` gives the LLM judge the deterministic judge's
clauses as claims instead of asking it to split each sentence (``judge_claims.md``): its
faithfulness is then the LLM's verdicts on the same claims, comparable claim by claim; the
report says which split was used.

    nice -n 10 .venv/bin/python benchmarks/judge_llm.py [--records benchmarks/out/bench_llm.json]
        [--limit N | --ids q001,q009] [--claims llm|deterministic] [--base-url URL]

Needs the index ``bench_llm`` ran on (``NENQA_INDEX_DIR``) and the local model prepared (``make
llm``) unless ``--base-url`` names a running OpenAI-compatible server. Prints a table, writes
JSON (default ``benchmarks/out/judge_llm.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eval.client import ChatReply  # noqa: E402
from eval.judges import JudgePrompt, LLMJudge, cohen_kappa  # noqa: E402
from eval.metrics import RenderingCheck, SupportJudge, Verdict, clauses  # noqa: E402
from eval.qa_schema import QAItem, load_qa  # noqa: E402
from eval.report import (  # noqa: E402
    judge_agreement,
    judged_sentence_pairs,
    score_item,
    summarize,
)

CLAIM_SPLITS = ("llm", "deterministic")
JUDGE_METRICS = ("faithfulness", "citation_recall", "citation_precision", "numeric_fidelity")


@dataclass
class CachedLLMJudge(LLMJudge):
    """``LLMJudge`` whose model outputs are kept in a JSONL file, one line per call, as they come.

    An output already in the file is reused, not asked again, and parsed as the judge parses a
    fresh one (an invalid output is counted again on every run). ``claim_split="deterministic"``
    takes a sentence's claims from the deterministic judge's clauses instead of the model.
    ``calls`` and ``call_seconds`` count the model calls of this run only; ``used_outputs`` and
    ``used_seconds`` every output this run needed, cached or not (seconds as measured when it
    was asked). While
    ``splitting_only`` is set, verdicts are not asked (``Verdict(None)``, not remembered), so
    a first pass can ask every sentence's split in a row: llama.cpp then reuses one system
    prompt's tokens from call to call instead of alternating between the two prompts.
    """

    cache_path: Path | None = None
    claim_split: str = "llm"
    on_call: Callable[[str, float], None] | None = None
    calls: int = 0
    call_seconds: float = 0.0
    cached_outputs: int = 0
    splitting_only: bool = False
    _outputs: dict[str, str] = field(default_factory=dict, repr=False)
    _seconds: dict[str, float | None] = field(default_factory=dict, repr=False)
    _used: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.claim_split not in CLAIM_SPLITS:
            raise ValueError(f"claim_split must be one of {', '.join(CLAIM_SPLITS)}")
        if self.cache_path is not None and self.cache_path.is_file():
            for line in self.cache_path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self._outputs[entry["key"]] = entry["output"]
                    self._seconds[entry["key"]] = entry.get("seconds")
        self.cached_outputs = len(self._outputs)

    @property
    def used_outputs(self) -> int:
        return len(self._used)

    @property
    def used_seconds(self) -> float:
        return round(sum(self._seconds.get(key) or 0.0 for key in self._used), 1)

    @property
    def used_untimed(self) -> int:
        """Outputs behind this run cached without their seconds (by an earlier version)."""
        return sum(self._seconds.get(key) is None for key in self._used)

    def judge(self, claim: str, evidence: Sequence[str]) -> Verdict:
        if self.splitting_only:
            return Verdict(None, "not asked: the pass that splits sentences into claims")
        return super().judge(claim, evidence)

    def claims(self, sentence: str) -> list[str] | None:
        if self.claim_split == "deterministic":
            return clauses(sentence)
        return super().claims(sentence)

    def _ask(self, prompt: JudgePrompt, **variables: str) -> str:
        key = json.dumps(
            [self.model, prompt.path.name, variables], ensure_ascii=False, sort_keys=True
        )
        self._used.add(key)
        if key in self._outputs:
            return self._outputs[key]
        started = time.perf_counter()
        output = super()._ask(prompt, **variables)
        seconds = time.perf_counter() - started
        self.calls += 1
        self.call_seconds += seconds
        self._outputs[key], self._seconds[key] = output, round(seconds, 2)
        if self.cache_path is not None:
            # One line per call, flushed at once: a run killed mid-way loses at most one call.
            with self.cache_path.open("a", encoding="utf-8") as cache:
                entry = {"key": key, "output": output, "seconds": self._seconds[key]}
                cache.write(json.dumps(entry, ensure_ascii=False) + "\n")
        if self.on_call is not None:
            self.on_call(prompt.path.stem, seconds)
        return output


def recorded_reply(record: Mapping, evidence: list[dict], renderings: Sequence) -> ChatReply:
    """The recorded answer as ``/v1/chat`` returned it, with its response's evidence and the
    quotes it shows in translation (from the replay)."""
    return ChatReply(
        answer=record["answer"],
        abstained=record["abstained"],
        evidence=evidence,
        citations=[],
        mode="llm",
        ms=record.get("latency", {}).get("total_ms", 0.0),
        renderings=list(renderings),
    )


def judge_records(
    records: Sequence[Mapping],
    replies: Mapping[str, ChatReply],
    items: Mapping[str, QAItem],
    judges: Mapping[str, SupportJudge],
    rendering_check: RenderingCheck,
    progress: Callable[[int, Mapping, dict], None] | None = None,
) -> list[dict]:
    """``score_item`` rows of each record that has a reply, in record order, with every judge."""
    rows = []
    for n, record in enumerate(records, start=1):
        if record["id"] not in replies:
            continue
        row = score_item(items[record["id"]], replies[record["id"]], judges, rendering_check)
        rows.append(row)
        if progress is not None:
            progress(n, record, row)
    return rows


def claim_agreement(rows: Sequence[dict], first: str, second: str) -> dict | None:
    """Cohen's kappa of two judges on the same claims (``None`` when their claims differ,
    as they do when each judge splits sentences its own way)."""
    a: list[bool] = []
    b: list[bool] = []
    for _, x, y in judged_sentence_pairs(rows, first, second):
        if [c["claim"] for c in x["claims"]] != [c["claim"] for c in y["claims"]]:
            return None
        for cx, cy in zip(x["claims"], y["claims"], strict=True):
            if None not in (cx["supported"], cy["supported"]):
                a.append(bool(cx["supported"]))
                b.append(bool(cy["supported"]))
    agreement = cohen_kappa(a, b)
    return {
        "pairs": agreement.pairs,
        "raw_agreement": round(agreement.raw, 4),
        "cohen_kappa": round(agreement.kappa, 4),
    }


def disagreements(rows: Sequence[dict], first: str, second: str) -> list[dict]:
    """Every sentence the two judges decided differently (both with a verdict)."""
    return [
        {
            "id": row["id"],
            "sentence": x["text"],
            "original": x["original"],
            first: {"supported": x["supported"], "reason": x["reason"]},
            second: {"supported": y["supported"], "reason": y["reason"]},
            f"{second}_claims": y["claims"],
        }
        for row, x, y in judged_sentence_pairs(rows, first, second)
        if None not in (x["supported"], y["supported"]) and x["supported"] != y["supported"]
    ]


def judged_report(rows: Sequence[dict], items: Mapping[str, QAItem], judge: CachedLLMJudge) -> dict:
    """Both judges' metrics, their agreement, the LLM judge's invalid outputs and its calls."""
    scored = [r for r in rows if "llm" in r["judges"]]
    return {
        "answers_judged": len(scored),
        "claim_split": judge.claim_split,
        "metrics": {
            name: {k: v for k, v in summarize(rows, items, name).items() if k in JUDGE_METRICS}
            for name in ("deterministic", "llm")
        },
        "claims": {
            name: sum(len(s["claims"]) for r in scored for s in r["judges"][name]["sentences"])
            for name in ("deterministic", "llm")
        },
        "sentence_agreement": judge_agreement(rows, "deterministic", "llm"),
        "claim_agreement": claim_agreement(rows, "deterministic", "llm"),
        "invalid_outputs": len(judge.invalid_outputs),
        "invalid_output_examples": [
            {"prompt": o.prompt, "output": o.output} for o in judge.invalid_outputs[:10]
        ],
        "calls_this_run": judge.calls,
        "call_seconds_this_run": round(judge.call_seconds, 1),
        "outputs_from_cache": judge.cached_outputs,
        "calls_behind_this_report": judge.used_outputs,
        "call_seconds_behind_this_report": judge.used_seconds,
        "calls_behind_this_report_untimed": judge.used_untimed,
        "disagreements": disagreements(rows, "deterministic", "llm"),
    }


def replayed_replies(records: Sequence[Mapping], items: Mapping[str, QAItem]) -> tuple[dict, list]:
    """Each recorded answer's reply with its evidence, from replaying its draft through the llm
    mode on the configured index (a recorded abstention as it is); and the ids whose replayed
    answer is not the recorded one."""
    from benchmarks.bench_llm import reply_of
    from benchmarks.tune_claims import replay
    from nenqa.settings import get_settings
    from server.state import load_service

    settings = get_settings()
    service = load_service(settings)
    replies, differing = {}, []
    for record in records:
        if record["abstained"]:
            # Nothing to judge: no evidence needed, and no replay that today's scope check
            # could decide differently.
            replies[record["id"]] = recorded_reply(record, [], [])
            continue
        answer = replay(service, settings, record["draft"], items[record["id"]])
        if answer.text != record["answer"] or answer.abstained != record["abstained"]:
            differing.append(record["id"])
            continue
        replied = reply_of(answer)
        replies[record["id"]] = recorded_reply(record, replied.evidence, replied.renderings)
    return replies, differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    out_dir = ROOT / "benchmarks" / "out"
    parser.add_argument("--records", type=Path, default=out_dir / "bench_llm.json")
    parser.add_argument("--qa", type=Path, default=ROOT / "eval" / "qa.jsonl")
    parser.add_argument("--ids", help="comma-separated record ids (default: every record)")
    parser.add_argument("--limit", type=int, help="only the first N records by id")
    parser.add_argument("--claims", choices=CLAIM_SPLITS, default="llm")
    parser.add_argument("--base-url", help="a running OpenAI-compatible server (/v1)")
    parser.add_argument("--out", type=Path, default=out_dir / "judge_llm.json")
    parser.add_argument("--cache", type=Path, help="default: <out>.<claims>.cache.jsonl")
    args = parser.parse_args(argv)

    from benchmarks.bench_llm import llm_endpoint
    from eval.judges import DeterministicJudge
    from nenqa.settings import get_settings
    from retriever.search import build_glossary

    recorded = json.loads(args.records.read_text(encoding="utf-8"))
    records = sorted(recorded["records"], key=lambda r: r["id"])
    if args.ids:
        wanted = set(args.ids.split(","))
        records = [r for r in records if r["id"] in wanted]
    records = records[: args.limit] if args.limit else records
    items = {i.id: i for i in load_qa(args.qa)}
    cache = args.cache or args.out.with_suffix(f".{args.claims}.cache.jsonl")
    args.out.parent.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    replies, differing = replayed_replies(records, items)
    print(
        f"replayed {len(records)} records in {time.perf_counter() - started:.0f} s; "
        f"{len(differing)} differ from the recording: {differing}",
        file=sys.stderr,
        flush=True,
    )
    settings = get_settings()
    # As bench_llm scored the recording: the deterministic judge also checks translations.
    deterministic = DeterministicJudge(build_glossary(settings))
    judging_started = time.perf_counter()

    def said(prompt: str, seconds: float) -> None:
        print(f"  call {judge.calls} ({prompt}) {seconds:.1f} s", file=sys.stderr, flush=True)

    def advanced(n: int, record: Mapping, row: dict) -> None:
        llm = row["judges"].get("llm", {})
        print(
            f"[{n}/{len(records)}] {record['id']} faithfulness deterministic "
            f"{row['judges'].get('deterministic', {}).get('faithfulness')} llm "
            f"{llm.get('faithfulness')}; {judge.calls} calls, "
            f"{time.perf_counter() - judging_started:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    log = args.out.with_suffix(".server.log")
    with llm_endpoint(settings, args.base_url, log) as local:
        judge = CachedLLMJudge(
            base_url=local.llm_base_url or "",
            model=local.llm_model,
            api_key=local.llm_api_key.get_secret_value(),
            timeout_s=local.llm_timeout_s,
            cache_path=cache,
            claim_split=args.claims,
            on_call=said,
        )
        if args.claims == "llm":
            # Every split first, then every verdict: each pass keeps one system prompt cached.
            judge.splitting_only = True
            judge_records(records, replies, items, {"llm": judge}, deterministic)
            judge.splitting_only = False
            print(f"sentences split: {judge.calls} calls", file=sys.stderr, flush=True)
        rows = judge_records(
            records,
            replies,
            items,
            {"deterministic": deterministic, "llm": judge},
            deterministic,
            advanced,
        )
    reproduced = sum(
        r["judges"].get("deterministic") == rec["row"]["judges"].get("deterministic")
        for r, rec in zip(rows, (rec for rec in records if rec["id"] in replies), strict=True)
    )
    report = {
        "records": str(args.records),
        "ids": [r["id"] for r in rows],
        "items": len(rows),
        "replay_differs": differing,
        "deterministic_rows_reproduced": reproduced,
        "cache": str(cache),
        "seconds": round(time.perf_counter() - started, 1),
        "judging_seconds": round(time.perf_counter() - judging_started, 1),
        **judged_report(rows, items, judge),
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    print_report(report)
    print(f"\nJSON: {args.out}")
    return 0


def print_report(report: dict) -> None:
    metrics = report["metrics"]
    print(
        f"\n{report['items']} recorded answers ({report['answers_judged']} judged, "
        f"claims split by {report['claim_split']}); {len(report['replay_differs'])} replays "
        f"differ, {report['deterministic_rows_reproduced']} deterministic rows reproduced"
    )
    print("| metric | deterministic judge | LLM judge |\n|---|---:|---:|")
    for key in JUDGE_METRICS:
        cells = " | ".join(_cell(metrics[name][key]) for name in ("deterministic", "llm"))
        print(f"| {key} | {cells} |")
    print(f"| claims judged | {report['claims']['deterministic']} | {report['claims']['llm']} |")
    sentence = report["sentence_agreement"]
    print(
        f"sentence agreement: {sentence['pairs']} pairs, raw {sentence['raw_agreement']:.3f}, "
        f"kappa {sentence['cohen_kappa']:.3f}"
    )
    if report["claim_agreement"] is not None:
        claim = report["claim_agreement"]
        print(
            f"claim agreement: {claim['pairs']} pairs, raw {claim['raw_agreement']:.3f}, "
            f"kappa {claim['cohen_kappa']:.3f}"
        )
    print(
        f"invalid judge outputs {report['invalid_outputs']}; model calls this run "
        f"{report['calls_this_run']} in {report['call_seconds_this_run']} s "
        f"({report['outputs_from_cache']} outputs in the cache); all calls behind this report "
        f"{report['calls_behind_this_report']} in {report['call_seconds_behind_this_report']} s "
        f"({report['calls_behind_this_report_untimed']} untimed); "
        f"{len(report['disagreements'])} sentences decided differently"
    )


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
