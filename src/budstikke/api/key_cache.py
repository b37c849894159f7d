"""A short-lived in-process memory of API keys that were found valid.

Looking a key up costs a database read on every request, which is a large
share of a cheap request. A key found valid is remembered for
`KEY_CACHE_S`, so a revoked key stops working in a running server within
that time instead of at once. Only valid keys are kept, and the memory
is bounded, so requests with random keys can neither fill it nor skip
the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from budstikke.store.api_keys import KeyOwner

# How long a key found valid is trusted without asking the database again:
# the longest time a revocation takes to reach a running server.
KEY_CACHE_S = 1.0
# Distinct keys remembered at once; when full, the memory starts over.
KEY_CACHE_SIZE = 1024


class KeyCache:
    def __init__(
        self,
        ttl_s: float = KEY_CACHE_S,
        max_size: int = KEY_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_size = max_size
        self.clock = clock
        self._owners: dict[str, tuple[KeyOwner, float]] = {}

    def get(self, key: str) -> KeyOwner | None:
        """Return the owner of a key found valid less than `ttl_s` ago, else None."""
        found = self._owners.get(key)
        if found is None:
            return None
        owner, valid_until = found
        if self.clock() >= valid_until:
            del self._owners[key]
            return None
        return owner

    def remember(self, key: str, owner: KeyOwner) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._owners) >= self.max_size:
            self._owners.clear()
        self._owners[key] = (owner, self.clock() + self.ttl_s)
