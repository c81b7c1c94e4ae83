"""``python -m bench [SCENARIO ...]``: run the benchmark scenarios and print one table.

Without arguments every scenario runs, in the order below; name one or more
(``python -m bench ingest storm``) to iterate on them alone. ``BENCH_QUICK=1``
shrinks every scenario to a smoke run of a minute or two.

The table (metric | result | target | met?) goes to stdout. After a run of
every scenario it also goes, with the machine it ran on, to bench/results.md,
and the raw numbers to bench/results.json (a subset run leaves them alone).
Progress goes to stderr. The exit status is 0 even when a target is missed:
the table is the result; only a scenario that crashes makes it 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime

from bench import callback, ingest, ingest_open, latency, memory, storm, tokens
from bench.common import BENCH_DIR, CORES, QUICK, Metric, ScenarioResult, log, pin_self_to_load_core
from bench.machine import describe_machine, stolen_cpu_seconds

SCENARIOS: dict[str, Callable[[], ScenarioResult]] = {
    "ingest": ingest.run,
    "ingest-open": ingest_open.run,
    "storm": storm.run,
    "storm-replicas": storm.run_replicas,
    "token": tokens.run,
    "latency": latency.run,
    "callback": callback.run,
    "memory": memory.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"any of: {', '.join(SCENARIOS)} (default: all)"
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    chosen = args.scenarios or list(SCENARIOS)
    pin_self_to_load_core()
    started = time.monotonic()
    results: list[ScenarioResult] = []
    failed = False
    for name in chosen:
        log(f"--- {name} ---")
        begun, stolen = time.monotonic(), stolen_cpu_seconds()
        try:
            results.append(SCENARIOS[name]())
        except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others' numbers
            failed = True
            traceback.print_exc()
            broken = ScenarioResult(name)
            broken.add(f"{name}: scenario failed", f"{type(exc).__name__}: {str(exc)[:120]}", "—", False)
            results.append(broken)
        took = time.monotonic() - begun
        steal = steal_percent(stolen_cpu_seconds() - stolen, took)
        log(f"{name} took {took:.0f} s; CPU stolen by the hypervisor {steal:.1f} %")
        results[-1].notes.append(f"{name}: CPU stolen by the hypervisor during the scenario {steal:.1f} %")
    elapsed = time.monotonic() - started
    machine = describe_machine()
    table = render_table([m for r in results for m in r.metrics])
    notes = [n for r in results for n in r.notes]
    header = (
        f"alertbridge benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        f"{' (BENCH_QUICK: smoke-test sizes, not comparable)' if QUICK else ''}, took {elapsed / 60:.1f} min"
    )
    print()
    print(header)
    print()
    print(table)
    for note in notes:
        print(f"- {note}")
    print()
    print(f"Machine: {machine}")
    if chosen == list(SCENARIOS):
        write_results(header, table, notes, machine, results)
    else:
        log("a subset of the scenarios ran: bench/results.md and results.json were left as they were")
    return 1 if failed else 0


def steal_percent(stolen_seconds: float, wall_seconds: float) -> float:
    """Stolen CPU as a share of all the machine's cores over ``wall_seconds``."""
    cores = os.cpu_count() or 1
    return 100 * stolen_seconds / (wall_seconds * cores) if wall_seconds > 0 else 0.0


def render_table(metrics: list[Metric]) -> str:
    """A Markdown table, readable in a terminal and pasteable into README.md."""
    rows = [("metric", "result", "target", "met?")]
    for m in metrics:
        met = "—" if m.met is None else ("yes" if m.met else "**no**")
        rows.append((m.name, m.result, m.target, met))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_results(
    header: str, table: str, notes: list[str], machine: str, results: list[ScenarioResult]
) -> None:
    md = [
        header,
        "",
        table,
        *([""] + [f"- {n}" for n in notes] if notes else []),
        "",
        f"Machine: {machine}",
        "",
    ]
    (BENCH_DIR / "results.md").write_text("\n".join(md), encoding="utf-8")
    data = {
        "header": header,
        "quick": QUICK,
        "machine": machine,
        "cores": {"server": CORES.server, "load": CORES.load, "split": CORES.split},
        "scenarios": {
            r.name: {
                "metrics": [
                    {"name": m.name, "result": m.result, "target": m.target, "met": m.met} for m in r.metrics
                ],
                "notes": r.notes,
                "raw": r.raw,
            }
            for r in results
        },
    }
    (BENCH_DIR / "results.json").write_text(
        json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8"
    )
    log(f"wrote {BENCH_DIR / 'results.md'} and {BENCH_DIR / 'results.json'}")


if __name__ == "__main__":
    sys.exit(main())
