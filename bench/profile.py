"""Profile the server under load with py-spy, and print where its time goes.

    python bench/profile.py --kind sms --provider outbox --duration 10 --out /tmp/sms.txt

Starts a server, drives it with wrk, samples it with `py-spy record` (all
threads, idle samples left out) and writes the collapsed stacks to --out.
Printed: the functions with the most samples, counted once per stack
(inclusive) and at the top of the stack (exclusive). Needs py-spy
(`pip install -e '.[bench]'`) and the right to trace the process (root).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import threading
from pathlib import Path

from harness import BIN, run_wrk, running_server


def summarise(collapsed: Path, top: int) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        exclusive[frames[-1]] += count
    print(f"{total} samples")
    print("inclusive:")
    for frame, count in inclusive.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {frame}")
    print("exclusive:")
    for frame, count in exclusive.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kind", choices=("sms", "email", "whoami"), default="sms")
    parser.add_argument("--provider", choices=("outbox", "smpp", "smtp"), default="outbox")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--out", default="/tmp/budstikke-profile.txt")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--idle", action="store_true", help="keep samples of waiting threads")
    arguments = parser.parse_args()
    out = Path(arguments.out)
    with running_server(provider=arguments.provider) as server:
        load = threading.Thread(
            target=run_wrk,
            kwargs={
                "server": server,
                "kind": arguments.kind,
                "duration_s": arguments.duration,
                "connections": arguments.connections,
            },
        )
        load.start()
        subprocess.run(
            [
                str(BIN / "py-spy"),
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(int(arguments.duration) - 1),
                "--format",
                "raw",
                "--threads",
                "--output",
                str(out),
                "--nonblocking",
                *(["--idle"] if arguments.idle else []),
            ],
            check=True,
            capture_output=True,
        )
        load.join()
    summarise(out, arguments.top)


if __name__ == "__main__":
    main()
