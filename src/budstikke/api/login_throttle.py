"""A limit on wrong operator keys per client address, held in memory.

NOTE: each process keeps its own counts, and a restart clears them. With
several API processes behind one address, a client gets MAX_FAILURES wrong
keys per window from each process.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from budstikke.domain.rate_limits import whole_seconds

# Wrong keys that one client address may send within FAILURE_WINDOW_S.
MAX_FAILURES = 5
FAILURE_WINDOW_S = 300.0
# The number of client addresses with recent wrong keys that are kept. When
# more addresses fail, the one that failed least recently is forgotten, so
# an attacker with many addresses cannot grow the table.
MAX_TRACKED_CLIENTS = 10_000
# An IPv6 host is usually assigned a whole /64, so its addresses count as one client.
IPV6_CLIENT_PREFIX = 64


def client_key(host: str | None) -> str:
    """Return the key under which a client's wrong keys are counted.

    IPv6 addresses are reduced to their /64 network. A host that is no IP
    address (such as "testclient", or None without a peer address) is
    counted under its own text.
    """
    if host is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6 and address.ipv4_mapped is not None:
        # An IPv4 client of a dual-stack listener ("::ffff:192.0.2.7").
        return str(address.ipv4_mapped)
    if address.version == 6:
        network = ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False)
        return str(network)
    return str(address)


class LoginThrottle:
    """The recent wrong keys of each client address, and the wait they impose.

    A client that sent `max_failures` wrong keys within `window_s` waits
    until the oldest of them leaves the window. Each client keeps at most
    `max_failures` times, and at most `max_clients` clients are kept.
    """

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_s: float = FAILURE_WINDOW_S,
        max_clients: int = MAX_TRACKED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or max_clients < 1:
            raise ValueError(
                f"invalid login throttle: max_failures={max_failures} (at least 1), "
                f"window_s={window_s} (above 0), max_clients={max_clients} (at least 1)"
            )
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self.clock = clock
        # Client key to the times (clock seconds) of its recent wrong keys, oldest first.
        # The client that failed least recently comes first.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after_s(self, client: str) -> int | None:
        """Return the whole seconds the client must wait, or None if it may try a key now."""
        failures = self._recent_failures(client)
        if failures is None or len(failures) < self.max_failures:
            return None
        return whole_seconds(failures[0] + self.window_s - self.clock())

    def record_failure(self, client: str) -> None:
        failures = self._recent_failures(client)
        if failures is None:
            failures = deque(maxlen=self.max_failures)
            self._failures[client] = failures
        failures.append(self.clock())
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def record_success(self, client: str) -> None:
        self._failures.pop(client, None)

    def tracked_clients(self) -> int:
        return len(self._failures)

    def _recent_failures(self, client: str) -> deque[float] | None:
        """Return the client's failures within the window, forgetting older ones."""
        failures = self._failures.get(client)
        if failures is None:
            return None
        window_start = self.clock() - self.window_s
        while failures and failures[0] <= window_start:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures
