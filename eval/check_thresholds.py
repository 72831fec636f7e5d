"""Fail when an evaluation report falls below the thresholds kept in ``eval/thresholds.toml``.

``[min]`` lists metrics that must reach a value, ``[max]`` metrics that must not exceed one
(``invalid_citation_rate = 0.0``). A dotted name reaches into the report's groups:
``"by_language.en.key_fact_correctness"`` is the English items' key-fact correctness. A metric
the report lacks fails (it was not measured), and so does a run with failed requests.
Usage: ``python -m eval.check_thresholds [report.json] [--thresholds eval/thresholds.toml]``,
or ``nenqa eval --check``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Shipped inside the eval package (a wheel too); reports go where `nenqa eval --out` puts them.
DEFAULT_THRESHOLDS = Path(__file__).resolve().parent / "thresholds.toml"
DEFAULT_REPORT = Path("eval") / "out" / "report.json"
BOUNDS = ("min", "max")


class ThresholdsError(ValueError):
    """The thresholds file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class ThresholdFailure:
    """One metric on the wrong side of its threshold (``value is None``: not in the report)."""

    metric: str
    bound: str
    limit: float
    value: float | None

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.metric}: not in the report (threshold {self.bound} {self.limit})"
        relation = "below the minimum" if self.bound == "min" else "above the maximum"
        return f"{self.metric} = {self.value:.4f} is {relation} {self.limit}"


def load_thresholds(path: Path = DEFAULT_THRESHOLDS) -> dict[str, dict[str, float]]:
    """``{"min": {metric: value}, "max": {...}}`` from a TOML file; values must lie in 0-1."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ThresholdsError(f"{path}: not valid TOML ({error})") from error
    unknown = sorted(set(data) - set(BOUNDS))
    if unknown:
        raise ThresholdsError(f"{path}: unknown table [{unknown[0]}]; use [min] and [max]")
    thresholds: dict[str, dict[str, float]] = {}
    for bound in BOUNDS:
        table = data.get(bound, {})
        for metric, value in table.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ThresholdsError(f"{path}: [{bound}] {metric} must be a number, got {value!r}")
            if not 0 <= value <= 1:
                raise ThresholdsError(f"{path}: [{bound}] {metric} = {value} is outside 0-1")
        thresholds[bound] = {metric: float(value) for metric, value in table.items()}
    return thresholds


def check_thresholds(
    report: Mapping[str, object], thresholds: Mapping[str, Mapping[str, float]]
) -> list[str]:
    """Every way the report misses its thresholds, in words (empty when it passes)."""
    problems: list[str] = []
    for bound in BOUNDS:
        for metric, limit in thresholds.get(bound, {}).items():
            value = _metric(report, metric)
            measured = float(value) if isinstance(value, int | float) else None
            if (
                measured is None
                or (bound == "min" and measured < limit)
                or (bound == "max" and measured > limit)
            ):
                problems.append(str(ThresholdFailure(metric, bound, limit, measured)))
    run = report.get("run")
    errors = run.get("errors", 0) if isinstance(run, Mapping) else 0
    if errors:
        problems.append(f"{errors} requests failed during the run")
    return problems


def _metric(report: Mapping[str, object], name: str) -> object:
    """A top-level metric, or one inside the report's groups by its dotted path."""
    if name in report:
        return report[name]
    value: object = report
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path, default=DEFAULT_REPORT)
    parser.add_argument("--thresholds", type=Path, default=DEFAULT_THRESHOLDS)
    args = parser.parse_args(argv)
    if not args.report.exists():
        print(f"no report at {args.report}; run `nenqa eval` first", file=sys.stderr)
        return 2
    report = json.loads(args.report.read_text(encoding="utf-8"))
    problems = check_thresholds(report, load_thresholds(args.thresholds))
    for problem in problems:
        print(f"below threshold: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.report}: every threshold in {args.thresholds} is met")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
