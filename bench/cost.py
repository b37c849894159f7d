"""Server CPU per instant SMS order by how many orders arrive together.

    python bench/cost.py --connections 1,8 --rates 500

Against one server with the test SMSC (receipts on): wrk with each number
of connections (closed loop, so that many orders are always in flight),
then the open-loop generator at each rate. Prints the rate, the server's
CPU time per order and, for the open loop, the latency from the scheduled
time. Orders that arrive together share the fixed cost of a transaction,
so the CPU per order falls as the concurrency rises.
"""

from __future__ import annotations

import argparse

from harness import run_open_loop, run_wrk, running_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--connections", default="1,8", help="wrk connection counts")
    parser.add_argument("--rates", default="500", help="open-loop rates per second")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of each run")
    arguments = parser.parse_args()
    connection_counts = [int(value) for value in arguments.connections.split(",") if value]
    rates = [float(value) for value in arguments.rates.split(",") if value]
    with running_server(provider="smpp") as server:
        # Warm-up: imports, compiled statement caches, the SMPP bind.
        run_open_loop(server, kind="sms", rate=100, duration_s=2)
        for connections in connection_counts:
            result = run_wrk(
                server, kind="sms", duration_s=arguments.duration, connections=connections
            )
            cpu_ms = result["server_cpu_percent"] * 10 / result["rate"]
            print(
                f"wrk {connections:3d} connections: {result['rate']:7.1f} orders/s, "
                f"server CPU {cpu_ms:.2f} ms per order"
            )
        for rate in rates:
            result = run_open_loop(
                server, kind="sms", rate=rate, duration_s=arguments.duration, drain_s=10
            )
            latency = result["latency_ms"]
            print(
                f"open loop {rate:6.0f}/s: server CPU {result['server_cpu_percent']}% "
                f"({result['server_cpu_percent'] * 10 / rate:.2f} ms per order), "
                f"p50 {latency['p50']} p99 {latency['p99']} ms"
            )


if __name__ == "__main__":
    main()
