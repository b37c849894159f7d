"""The test SMSC for benchmarks: receipts at once, no PDU echo, no records.

`python bench/smsc.py --port 2775 [--receipt-delay 0]` serves SMPP 3.4 on
127.0.0.1 until it is terminated. It is budstikke's strict test SMSC with
two changes for long runs: nothing is printed per PDU, and it keeps no
records for test assertions, so its memory stays flat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from budstikke.channels.smpp.dev_smsc import run_dev_smsc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=2775, help="TCP port on 127.0.0.1")
    parser.add_argument(
        "--receipt-delay", type=float, default=0.0, help="seconds before each delivery receipt"
    )
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_dev_smsc(port=arguments.port, receipt_delay_s=arguments.receipt_delay, echo=None)
        )


if __name__ == "__main__":
    main()
