"""Measure the instant path against its ceiling, on one database with one provider.

    python bench/run.py --provider smpp --database sqlite --duration 15

In one server run, back to back:
1. the ceiling: wrk on GET whoami (authentication and nothing else);
2. the maximum order rate: wrk on instant orders with unique idempotency ids;
3. open-loop runs at 25 %, 50 % and 90 % of that rate and at fixed rates
   (500/s by default), with latency measured from each request's scheduled
   time, and the time from each 201 to the notification's final status.

The JSON of every figure goes to --json; a summary goes to standard output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

# `python bench/run.py` puts bench/ first on sys.path, so its modules import by name.
from harness import (
    Server,
    delivery_times,
    machine,
    postgres_database,
    run_open_loop,
    run_wrk,
    running_server,
)

KIND_OF_PROVIDER = {"outbox": "sms", "smpp": "sms", "smtp": "email", "outbox-email": "email"}


def measure(
    server: Server,
    *,
    kind: str,
    duration_s: float,
    fractions: list[float],
    fixed_rates: list[float],
    drain_s: float | None = None,
    final_wait_s: float = 60.0,
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    # Warm-up: imports, compiled statement caches, the first provider connections.
    run_open_loop(server, kind=kind, rate=100, duration_s=2)
    figures["ceiling"] = run_wrk(server, kind="whoami", duration_s=duration_s)
    figures["peak"] = run_wrk(server, kind=kind, duration_s=duration_s)
    peak = figures["peak"]["rate"]
    figures["ratio_to_ceiling"] = round(peak / figures["ceiling"]["rate"], 3)
    rates = [("fraction", fraction, fraction * peak) for fraction in fractions]
    rates += [("fixed", rate, rate) for rate in fixed_rates]
    figures["open_loop"] = []
    with tempfile.TemporaryDirectory() as folder:
        for label, value, rate in rates:
            receipts = Path(folder) / f"receipts-{label}-{value}.txt"
            result = run_open_loop(
                server,
                kind=kind,
                rate=rate,
                duration_s=duration_s,
                receipts=receipts,
                drain_s=drain_s,
            )
            result["label"] = f"{value:.0%} of peak" if label == "fraction" else f"{value:g}/s"
            result["to_final_status"] = delivery_times(server, receipts, final_wait_s)
            figures["open_loop"].append(result)
    figures["database_bytes"] = server.database_bytes()
    return figures


def print_summary(figures: dict[str, Any]) -> None:
    ceiling, peak = figures["ceiling"], figures["peak"]
    print(
        f"ceiling (whoami, wrk): {ceiling['rate']:.0f}/s  "
        f"server CPU {ceiling['server_cpu_percent']}%  wrk CPU {ceiling['wrk_cpu_percent']}%"
    )
    print(
        f"peak orders (wrk):     {peak['rate']:.0f}/s  non-2xx {peak['non_2xx']}  "
        f"server CPU {peak['server_cpu_percent']}%  helper CPU {peak['helper_cpu_percent']}%  "
        f"wrk CPU {peak['wrk_cpu_percent']}%"
    )
    print(f"orders / ceiling:      {figures['ratio_to_ceiling']:.1%}")
    print("open loop (latency from the scheduled time, ms; '-' = still unanswered):")
    for run in figures["open_loop"]:
        latency = {key: shown(value) for key, value in run["latency_ms"].items()}
        final = run["to_final_status"]
        print(
            f"  {run['label']:>12} achieved {run['achieved_rate']:7.1f}/s  "
            f"p50 {latency['p50']} p90 {latency['p90']} p99 {latency['p99']} "
            f"p99.9 {latency['p99.9']}  unanswered {run['unanswered']}  "
            f"201->final p50 {shown(final['ms']['p50'])} p99 {shown(final['ms']['p99'])} "
            f"(not final: {final['not_final']})  statuses {run['statuses']}  "
            f"server CPU {run['server_cpu_percent']}%  generator CPU "
            f"{run['generator_cpu_percent']}%"
        )


def shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--provider", choices=sorted(KIND_OF_PROVIDER), default="outbox")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of each load run")
    parser.add_argument(
        "--fractions", default="0.25,0.5,0.9", help="open-loop rates as fractions of the peak"
    )
    parser.add_argument("--rates", default="500", help="fixed open-loop rates per second")
    parser.add_argument("--json", help="file for every figure as JSON")
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    provider = arguments.provider.removesuffix("-email")
    fractions = [float(value) for value in arguments.fractions.split(",") if value]
    fixed_rates = [float(value) for value in arguments.rates.split(",") if value]
    with contextlib.ExitStack() as stack:
        database_url = ""
        if arguments.database == "postgresql":
            database_url = stack.enter_context(postgres_database())
        server = stack.enter_context(running_server(provider=provider, database_url=database_url))
        figures = measure(
            server,
            kind=KIND_OF_PROVIDER[arguments.provider],
            duration_s=arguments.duration,
            fractions=fractions,
            fixed_rates=fixed_rates,
        )
    figures["machine"] = machine()
    figures["provider"] = arguments.provider
    figures["database"] = arguments.database
    print_summary(figures)
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
