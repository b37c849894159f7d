"""The short benchmark behind `make bench`: scenario 1 on SQLite in about a minute.

Instant SMS orders over HTTP, handed off over SMPP to the test SMSC with
delivery receipts on, against the ceiling (GET whoami) in the same server
run. Prints the peak order rate, its share of the ceiling, the latency at
500 orders/s measured from each request's scheduled time, and the time
from the 201 to SMS_Delivered, next to the targets. bench/run.py runs the
full version; docs/benchmarks.md has the figures and what bounds them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

from harness import running_server
from run import measure, print_summary

TARGET_PEAK = 1000.0
TARGET_P99_MS = 25.0
TARGET_RATIO = 0.40


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of each load run")
    parser.add_argument("--provider", choices=("smpp", "outbox"), default="smpp")
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk not found; install it with: apt-get install -y wrk")
    started = time.monotonic()
    with running_server(provider=arguments.provider) as server:
        # The 500/s run stops waiting 10 s after its last request was due, so a
        # server slower than that still ends within the time `make bench` allows.
        figures = measure(
            server,
            kind="sms",
            duration_s=arguments.duration,
            fractions=[],
            fixed_rates=[500],
            drain_s=10,
            final_wait_s=10,
        )
    print_summary(figures)
    peak = figures["peak"]["rate"]
    p99 = figures["open_loop"][0]["latency_ms"]["p99"]
    p99_ok = p99 is not None and p99 < TARGET_P99_MS
    ratio = figures["ratio_to_ceiling"]
    print("targets (SQLite, 2 cores):")
    print(f"  peak >= {TARGET_PEAK:.0f}/s: {peak:.0f}/s, {verdict(peak >= TARGET_PEAK)}")
    p99_text = "over the drain time" if p99 is None else f"{p99:.1f} ms"
    print(f"  p99 at 500/s < {TARGET_P99_MS:g} ms: {p99_text}, {verdict(p99_ok)}")
    print(f"  ratio >= {TARGET_RATIO:.0%}: {ratio:.1%}, {verdict(ratio >= TARGET_RATIO)}")
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
